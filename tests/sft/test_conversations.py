"""The conversations data source: what is learned (the assistant's tokens, per the template's
spans), packing that keeps conversations apart, and malformed input counted and written aside."""

from __future__ import annotations

import json

import numpy as np
import pytest

from framework.core.errors import ConfigError
from framework.tokenize.files import load_tokenizer
from framework.train import step
from plugins.data.conversations import Conversations, tokenize_conversation
from plugins.templates.chat import ChatML

GOOD = [
    {"messages": [{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "Sort 3 1 2"},
                  {"role": "assistant", "content": "1 2 3"},
                  {"role": "user", "content": "Merci — et 9 8 ?"},
                  {"role": "assistant", "content": "8 9 ✓"}]},
    {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
]  # fmt: skip
BAD = {
    "not json": "{nope",
    "no messages": json.dumps({"text": "a document"}),
    "unknown role": json.dumps({"messages": [{"role": "robot", "content": "x"},
                                             {"role": "assistant", "content": "y"}]}),
    "empty content": json.dumps({"messages": [{"role": "user", "content": " "},
                                              {"role": "assistant", "content": "y"}]}),
    "no assistant": json.dumps({"messages": [{"role": "user", "content": "anyone?"}]}),
    "too long": json.dumps({"messages": [{"role": "user", "content": "z" * 400},
                                         {"role": "assistant", "content": "y"}]}),
}  # fmt: skip


def test_learned_tokens_are_exactly_the_assistant_turns(chat_tokenizer_dir):
    tok = load_tokenizer(chat_tokenizer_dir)
    ids, learn = tokenize_conversation(tok, ChatML(), GOOD[0]["messages"])
    assert tok.decode(ids.tolist()) == "".join(t for t, _ in ChatML().render(GOOD[0]["messages"]))
    learned = tok.decode(ids[learn == 1].tolist())
    assert learned == "1 2 3<|im_end|>8 9 ✓<|im_end|>"
    assert (ids == tok.special_tokens["<|im_start|>"]).sum() == 5  # atomic, one id each


def test_malformed_conversations_are_counted_and_written_aside(chat_tokenizer_dir, tmp_path,
                                                               capsys):  # fmt: skip
    path = tmp_path / "chats.jsonl"
    lines = [json.dumps(c) for c in GOOD * 10] + list(BAD.values())
    path.write_text("\n".join(lines) + "\n")
    data = Conversations(str(path), str(chat_tokenizer_dir), "chatml", validation_fraction=0.1)
    it = data.train_iterator(batch_size=4, seq_len=127, seed=0)
    batch = next(it)
    assert set(batch) == {"tokens", "segment_ids", "loss_mask"}
    assert batch["tokens"].shape == (4, 128)
    data.write_run_files(tmp_path / "run")
    rejected = [json.loads(x) for x in (tmp_path / "run/rejected_conversations.jsonl").open()]
    assert len(rejected) == len(BAD)
    reasons = " | ".join(r["reason"] for r in rejected)
    for needle in ("bad JSON", "no 'messages'", "unknown role", "empty", "no assistant turn",
                   "longer than the context"):  # fmt: skip
        assert needle in reasons
    assert rejected[0]["where"].endswith(f":{len(GOOD) * 10 + 1}")
    assert "6 of 26 conversations rejected" in capsys.readouterr().out
    assert json.loads((tmp_path / "run/chat.json").read_text()) == {"template": "chatml"}


def test_packed_rows_keep_whole_conversations_and_resume_in_place(chat_tokenizer_dir, tmp_path):
    path = tmp_path / "chats.jsonl"
    path.write_text("\n".join(json.dumps(c) for c in GOOD * 20) + "\n")
    data = Conversations(str(path), str(chat_tokenizer_dir), "chatml", validation_fraction=0.0)
    it = data.train_iterator(batch_size=2, seq_len=127, seed=3)
    first = [next(it) for _ in range(3)]
    state = it.get_state()
    after = [next(it) for _ in range(4)]
    again = data.train_iterator(batch_size=2, seq_len=127, seed=3)
    again.set_state(state)
    for a, b in zip(after, [next(again) for _ in range(4)], strict=True):
        assert all(np.array_equal(a[k], b[k]) for k in a)
    tok = load_tokenizer(chat_tokenizer_dir)
    rendered = {"".join(t for t, _ in ChatML().render(c["messages"])) for c in GOOD}
    for batch in first:
        for row, segs in zip(batch["tokens"], batch["segment_ids"], strict=True):
            for s in set(segs.tolist()) - {0}:  # every segment is one whole conversation
                assert tok.decode(row[segs == s].tolist()) in rendered
    weights = np.asarray(step.target_weights({k: v for k, v in first[0].items()}))
    assert weights.sum() > 0


def test_a_tokenizer_without_the_template_tokens_fails_in_one_line(plain_tokenizer_dir, tmp_path):
    path = tmp_path / "chats.jsonl"
    path.write_text(json.dumps(GOOD[1]) + "\n")
    data = Conversations(str(path), str(plain_tokenizer_dir), "chatml")
    with pytest.raises(ConfigError, match=r"lacks the special tokens <\|im_start\|>, <\|im_end\|>"):
        data.check()


def test_special_token_names_typed_in_a_message_stay_plain_text(chat_tokenizer_dir):
    tok = load_tokenizer(chat_tokenizer_dir)
    messages = [{"role": "user", "content": "what is <|endoftext|>?"},
                {"role": "assistant", "content": "a marker"}]  # fmt: skip
    ids, _ = tokenize_conversation(tok, ChatML(), messages)
    assert tok.eot_id not in ids.tolist()  # typed text, not the document separator
    assert "<|endoftext|>" in tok.decode(ids.tolist())
