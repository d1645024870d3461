"""Run datatrove's FineWeb filters and PII formatter on a JSONL of texts (helper of
``filters_vs_datatrove.py``; runs inside the datatrove virtual environment, never imports deepdive).

Usage: python _datatrove_filters.py IN.jsonl OUT.jsonl LID_MODEL LISTS_DIR
Each filter sees each input text on its own (not chained), like deepdive's side.
"""

import json
import sys
import time

from datatrove.data import Document
from datatrove.pipeline.filters import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
    LanguageFilter,
    URLFilter,
)
from datatrove.pipeline.formatters import PIIFormatter
from datatrove.utils import lid

inp, out, lid_model, lists_dir = sys.argv[1:5]


def read(name):
    with open(f"{lists_dir}/{name}") as f:
        return [line for line in f if line.strip()]


# The reference downloads lid.176.bin; offline we point it at the same .ftz deepdive uses.
lid.FT176LID.MODEL_URL = lid_model
lid.cached_asset_path_or_download = lambda url, **kw: url
url_filter = URLFilter(
    use_integrated_lists=False,
    extra_domains=read("domains.txt"),
    extra_urls=read("urls.txt"),
    banned_words=read("banned_words.txt"),
    banned_subwords=read("banned_subwords.txt"),
    soft_banned_words=read("soft_banned_words.txt"),
)
filters = {
    "url": url_filter,
    "language": LanguageFilter(languages=["en"]),
    "gopher_repetition": GopherRepetitionFilter(),
    "gopher_quality": GopherQualityFilter(),
    "c4_quality": C4QualityFilter(filter_no_terminal_punct=False),
    "fineweb_quality": FineWebQualityFilter(),
}
times = dict.fromkeys([*filters, "pii"], 0.0)
with open(inp) as f, open(out, "w") as g:
    for line in f:
        rec = json.loads(line)
        row = {"id": rec["id"]}
        for name, flt in filters.items():
            doc = Document(text=rec["text"], id=rec["id"], metadata={"url": rec.get("url") or ""})
            t = time.perf_counter()
            try:
                res = flt.filter(doc)
            except Exception as e:  # noqa: BLE001
                res = (False, f"EXCEPTION {type(e).__name__}")
            times[name] += time.perf_counter() - t
            keep, reason = (res, None) if isinstance(res, bool) else res
            if name == "language" and not keep:
                reason = "language"
            row[name] = [bool(keep), reason]
            if name == "c4_quality" and keep:
                row["c4_text"] = doc.text
            if name == "language":
                row["lang"] = [doc.metadata.get("language"), doc.metadata.get("language_score")]
        t = time.perf_counter()
        row["pii_text"] = PIIFormatter().format(rec["text"])
        times["pii"] += time.perf_counter() - t
        g.write(json.dumps(row, ensure_ascii=False) + "\n")
print(json.dumps(times))
