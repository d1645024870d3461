"""Synthetic-skill data (`deepdive skill make/score`) and `deepdive tokenizer add-special`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from framework.data import skills
from tests.helpers import REPO_ROOT


def _deepdive(*args, cwd=REPO_ROOT):
    env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "framework", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_skill_make_holds_out_unseen_questions_with_correct_answers(tmp_path):
    out = _deepdive("skill", "make", "--skill", "sort_numbers", "--train", "500", "--heldout",
                    "50", "--output", tmp_path / "skill")  # fmt: skip
    assert out.returncode == 0, out.stderr
    heldout = skills.read_jsonl(tmp_path / "skill/heldout.jsonl")
    train = skills.read_jsonl(tmp_path / "skill/train.jsonl")
    assert len(heldout) == 50 and (tmp_path / "skill/COMPLETED").exists()
    for example in heldout:  # the answer is the question's numbers, sorted
        numbers = [int(t) for t in example["messages"][-1]["content"].split() if t.isdigit()]
        assert example["answer"] == " ".join(map(str, sorted(numbers)))
    asked = {m["content"] for c in train for m in c["messages"] if m["role"] == "user"}
    assert len(asked) == 500 and not asked & {e["messages"][-1]["content"] for e in heldout}
    assert any(len(c["messages"]) > 2 for c in train)  # several turns
    assert any(c["messages"][0]["role"] == "system" for c in train)


def test_skill_score_counts_exact_matches_and_ended_turns(tmp_path):
    heldout = [{"messages": [{"role": "user", "content": f"sort {i} 0"}], "answer": f"0 {i}"}
               for i in range(1, 5)]  # fmt: skip
    (tmp_path / "h.jsonl").write_text("".join(json.dumps(e) + "\n" for e in heldout))
    answers = [{"index": 0, "completion": "0 1", "finish_reason": "end_of_turn"},
               {"index": 1, "completion": " 0 2 ", "finish_reason": "length"},
               {"index": 2, "completion": "2 0", "finish_reason": "end_of_turn"},
               {"index": 3, "error": "unknown role"}]  # fmt: skip
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(a) + "\n" for a in answers))
    out = _deepdive("skill", "score", tmp_path / "h.jsonl", "--completions",
                    f"sft={tmp_path / 'a.jsonl'}", "--output", tmp_path / "s.json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    score = json.loads((tmp_path / "s.json").read_text())["sft"]
    assert score == {"prompts": 4, "exact_match": 0.5, "ended_with_end_of_turn": 0.5, "errors": 1}


def test_tokenizer_add_special_for_a_template(tmp_path, plain_tokenizer_dir):
    out = _deepdive("tokenizer", "add-special", plain_tokenizer_dir, "--template", "llama3",
                    "--output", tmp_path / "tok")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "vocab 257 -> 261" in out.stdout
    meta = json.loads((tmp_path / "tok/tokenizer.json").read_text())
    assert meta["special_tokens"]["<|eot_id|>"] == 260
    bad = _deepdive("tokenizer", "add-special", plain_tokenizer_dir, "--template", "nope",
                    "--output", tmp_path / "tok2")  # fmt: skip
    assert bad.returncode == 2 and "unknown template" in bad.stderr.strip().splitlines()[-1]
