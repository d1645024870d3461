"""Document filters (FineWeb's recipe and friends), one per module, each registered by name.

Every filter follows datatrove's contract: ``filter(doc)`` returns ``True`` to keep the document,
or ``(False, reason)`` to drop it, where ``reason`` is datatrove's own reason name
(``gopher_short_doc``, ``dup_para_frac``, ``line_punct_ratio``, ...). ``explain(doc)`` returns
the verdict with *every* statistic the filter computes next to its threshold and comparison
(see :mod:`plugins.filters.explaining`); it never changes the document.

FineWeb order: ``url`` → (extraction) → ``language`` → ``gopher_repetition`` → ``gopher_quality``
→ ``c4_quality`` → ``fineweb_quality``. Defaults equal today's datatrove with English as the
language. Word splitting is spaCy's blank English tokenizer, shared through
:mod:`framework.text` so consecutive filters tokenize a text once.
"""
