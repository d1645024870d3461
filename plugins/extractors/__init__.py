"""Extractor plugins (kind ``extractors``): ``extract(html) -> str``, the main text of a page."""
