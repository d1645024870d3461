"""Document formatters: rewrite a document's text (``format(doc) -> doc``), e.g. PII anonymisation."""
