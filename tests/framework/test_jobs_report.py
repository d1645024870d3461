"""The end-of-job report of `deepdive run`: metrics read by the one metrics.jsonl reader, printed
for people (fixed decimals), a torn last line ignored."""

from __future__ import annotations

import json

from framework.cli import jobs


def test_report_prints_fixed_decimals_from_the_newest_rows(tmp_path, capsys):
    train = tmp_path / "train"
    train.mkdir()
    rows = [
        {"step": 100, "loss": 3.2564330101013184, "val_loss": None},
        {"step": 200, "loss": 2.5, "val_loss": 2.71828182, "val_bpb": 1.23456789},
    ]
    text = "".join(json.dumps(r) + "\n" for r in rows) + '{"step": 300, "lo'  # cut by a kill
    (train / "metrics.jsonl").write_text(text)
    report = jobs.collect_report(tmp_path, {"train": 12.34})
    assert report["train"]["step"] == 200 and report["train"]["loss"] == 2.5
    jobs.print_report(report)
    out = capsys.readouterr().out
    assert "step 200, loss 2.5000, validation loss 2.7183, bits per byte 1.2346" in out
