"""``deepdive chat``: the KV cache kept across turns gives what a fresh prefill of the whole
conversation gives, only the new tokens are fed, the prefix-property fallback, context overflow,
the REPL's commands and streaming, the JSONL batch mode and its malformed lines, exit codes."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from typing import ClassVar

import numpy as np
import pytest
from flax import nnx

from framework.cli import app as cli
from framework.core.registry import MODELS, SAMPLERS, TEMPLATES
from framework.sample import chat
from framework.sample import generate as sample
from framework.train import checkpoint

SPECIALS = {"<|endoftext|>": 256, "<|im_start|>": 257, "<|im_end|>": 258}
VOCAB = 259
NEW = 8


def make_tokenizer():
    """Byte-level BPE (no merges) with the ChatML control tokens after the 256 byte ranks."""
    from plugins.tokenizers.bpe import BPETokenizer

    ranks = {bytes([i]): i for i in range(256)}
    return BPETokenizer.from_ranks(ranks, SPECIALS, "gpt4")


def make_model(plugin: str, max_seq_len: int = 256):
    if plugin == "gpt2":
        config = MODELS.get("gpt2")(
            vocab_size=VOCAB, max_seq_len=max_seq_len, num_layers=2, num_heads=4, d_model=32,
            init_std=0.2,
        )  # fmt: skip
    else:
        config = MODELS.get("llama")(
            vocab_size=VOCAB, max_seq_len=max_seq_len, num_layers=2, num_heads=4,
            num_kv_heads=2, d_model=32, multiple_of=16, init_std=0.2,
        )  # fmt: skip
    with nnx.use_eager_sharding(False):
        model = config.build(nnx.Rngs(0))
    return model, config


_ENGINES: dict = {}


def engine(plugin: str, max_seq_len: int = 256, bias: float | None = None):
    """``(generator, decoder)`` of a tiny random model stopping at ``<|im_end|>``, greedy (after
    :class:`EndSooner` with ``bias``), shared by the tests so each compiles once."""
    key = (plugin, max_seq_len, bias)
    if key not in _ENGINES:
        model, config = make_model(plugin, max_seq_len)
        greedy = SAMPLERS.get("greedy")()
        sampler = greedy if bias is None else [EndSooner(bias), greedy]
        gen = sample.Generator(model, config, sampler, eos_id=SPECIALS["<|im_end|>"], batch_size=1)
        _ENGINES[key] = (gen, sample.CachedDecoder(gen))
    return _ENGINES[key]


def make_session(engine_, tokenizer, template=None, **kwargs):
    gen, decoder = engine_
    template = template or TEMPLATES.build("chatml")
    session = chat.ChatSession(decoder, tokenizer, template, max_new_tokens=NEW, **kwargs)
    return session, gen


def send_and_check(session, gen, message, **kwargs):
    """Send ``message``; check that the reply's tokens and logprobs equal a fresh prefill of the
    whole conversation's tokens, which decode to the template's rendering of the conversation
    (the prefix property the kept cache relies on)."""
    before = session.messages
    turn = session.send(message, **kwargs)
    (fresh,) = gen.generate([turn.prompt_tokens], max_new_tokens=NEW)
    assert fresh.tokens == turn.tokens
    np.testing.assert_allclose(fresh.logprobs, turn.logprobs, atol=1e-5, rtol=0)
    user = {"role": "user", "content": message}
    after = session.messages  # the oldest turns may have been dropped, an empty reply left out
    conversation = after[:-1] if turn.text.strip() else [*after, user]
    if not any("dropped" in note for note in turn.notes):
        assert conversation == [*before, user]
    rendered = chat.render_text(session.template, conversation, generation_prompt=True)
    assert session.tokenizer.decode(turn.prompt_tokens) == rendered
    return turn


def delta_tokens(tokenizer, previous, message):
    """What a turn feeds after ``previous``: its last generated token, the rest of that turn's
    end (ChatML: ``<|im_end|>`` unless generated, then a newline) and the new message."""
    user = chat.render_text(TEMPLATES.build("chatml"), [{"role": "user", "content": message}],
                            generation_prompt=True)  # fmt: skip
    end = "\n" if previous.finish_reason == "end_of_turn" else "<|im_end|>\n"
    return 1 + len(tokenizer.encode(end + user, allowed_special="all"))


@dataclasses.dataclass(frozen=True)
class EndSooner:
    """A penalty-stage sampler that adds ``bias`` to ``<|im_end|>``'s logit, so that the random
    test models end some turns themselves (it also makes the engine track the tokens seen)."""

    bias: float
    stage: ClassVar[int] = 0

    def __call__(self, logits, seen=None):
        return logits.at[:, SPECIALS["<|im_end|>"]].add(self.bias)


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


@pytest.mark.parametrize("plugin", ["gpt2", "llama"])
def test_kept_cache_equals_full_prefill_and_feeds_only_the_delta(plugin, tokenizer):
    session, gen = make_session(engine(plugin), tokenizer, system="Be brief.")
    previous, fed = None, 0
    for message in ["hello", "how are you today?", "and a third turn"]:
        held = len(session.tokens)
        pieces: list[str] = []
        turn = send_and_check(session, gen, message, on_text=pieces.append)
        assert turn.notes == [] and turn.finish_reason == "length"
        assert "".join(pieces) == turn.text  # streamed as generated, nothing lost or doubled
        if previous is None:
            assert (turn.cached, turn.fed) == (0, len(turn.prompt_tokens))
        else:
            assert turn.cached == held - 1
            assert turn.fed == delta_tokens(tokenizer, previous, message)
        previous, fed = turn, fed + turn.fed
    assert session.fed_total == fed


@pytest.mark.parametrize(("plugin", "bias"), [("gpt2", 2.0), ("llama", 3.0)])
def test_turns_ended_by_the_model(plugin, bias, tokenizer):
    """Replies that end at ``<|im_end|>`` (kept in the cache: the next turn feeds a newline),
    and an empty reply, which is left out of the history and starts the cache over."""
    session, gen = make_session(engine(plugin, bias=bias), tokenizer, system="Be brief.")
    reasons, previous = [], None
    for message in ["hello", "how are you today?", "and a third turn", "four"]:
        turn = send_and_check(session, gen, message)
        reasons.append(turn.finish_reason)
        if previous is not None and previous.text.strip():
            assert turn.fed == delta_tokens(tokenizer, previous, message)
        elif previous is not None:
            assert turn.cached == 0
        if not turn.text.strip():
            assert turn.notes == ["the reply was empty: the turn is left out of the history"]
            assert session.history[-1:] != [{"role": "user", "content": message}]
        previous = turn
    assert "end_of_turn" in reasons
    assert any(t["role"] == "assistant" for t in session.history)


def test_streaming_calls_back_per_token(tokenizer, monkeypatch):
    session, _ = make_session(engine("gpt2"), tokenizer)
    updates: list[list[int]] = []
    original = session.decoder.generate

    def spy(*args, **kwargs):
        inner = kwargs["on_update"]
        kwargs["on_update"] = lambda tokens: (updates.append(list(tokens)), inner(tokens))
        return original(*args, **kwargs)

    monkeypatch.setattr(session.decoder, "generate", spy)
    turn = session.send("hello", on_text=lambda _: None)
    assert [len(u) for u in updates] == list(range(1, len(turn.tokens) + 1))


class ReorderingChatML:
    """ChatML that numbers the user turns in the system prompt: every turn re-renders the start
    of the conversation, so the cache never holds a prefix of the new rendering."""

    special_tokens = ("<|im_start|>", "<|im_end|>")
    end_of_turn = "<|im_end|>"

    def render(self, messages, add_generation_prompt=False):
        turns = sum(m["role"] == "user" for m in messages)
        system = [{"role": "system", "content": f"turn {turns}"}]
        return TEMPLATES.build("chatml").render(system + list(messages), add_generation_prompt)


def test_template_without_prefix_property_falls_back_to_full_prefill(tokenizer):
    session, gen = make_session(engine("gpt2"), tokenizer, template=ReorderingChatML())
    send_and_check(session, gen, "hello")
    turn = send_and_check(session, gen, "again")
    assert any("prefix property" in note for note in turn.notes)
    assert turn.cached == 0 and turn.fed == len(turn.prompt_tokens)


def test_context_overflow_drops_the_oldest_turns(tokenizer):
    session, gen = make_session(engine("llama", max_seq_len=96), tokenizer)
    notes = []
    for i in range(6):
        message = f"message number {i}, long enough to fill the context"
        send_and_check(session, gen, message, on_note=notes.append)
        assert len(session.tokens) <= 96
    assert any("dropped the oldest" in n for n in notes)
    assert session.history[-2]["content"].startswith("message number 5")
    with pytest.raises(chat.InputError, match="too long"):
        session.send("x" * 200)
    assert session.history[-2]["content"].startswith("message number 5")  # left as it was


def test_reset_and_system_start_over(tokenizer):
    session, _ = make_session(engine("gpt2"), tokenizer)
    first = session.send("hello")
    session.set_system("You are terse.")
    assert session.history == [] and session.tokens == []
    with_system = session.send("hello")
    assert with_system.cached == 0
    assert session.tokenizer.decode(session.tokens).startswith("<|im_start|>system\nYou are terse.")
    session.set_system(None)
    again = session.send("hello")
    assert again.tokens == first.tokens  # same conversation from scratch, same greedy reply


# ------------------------------------------------------------------------------------------------
# The command


def write_run(directory, template: str | None = "chatml", plugin: str = "gpt2"):
    """A run directory: the random tiny model, the tokenizer with ChatML's control tokens and,
    when ``template``, chat.json naming it."""
    model, config = make_model(plugin)
    tokenizer_dir = directory.parent / f"{directory.name}_tokenizer"
    make_tokenizer().save(tokenizer_dir)
    checkpoint.write_inference_run(directory, plugin, config, model, tokenizer_dir)
    if template:
        (directory / "chat.json").write_text(json.dumps({"template": template}))
    return model, config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("chat") / "run"
    write_run(directory)
    return directory


GREEDY = ["--gin.sample.sampler=@samplers.greedy()", "--max_new_tokens", str(NEW)]


def expected_turns(run_dir, script):
    """The turns of a ChatSession over the run directory answering ``script`` (messages, or None
    for a /reset)."""
    model, tokenizer, config, _ = checkpoint.load_for_inference(run_dir)
    gen = sample.Generator(
        model, config, SAMPLERS.get("greedy")(), eos_id=SPECIALS["<|im_end|>"], batch_size=1
    )
    session, _ = make_session((gen, sample.CachedDecoder(gen)), tokenizer, system="Be brief.")
    turns = []
    for message in script:
        if message is None:
            session.reset()
        else:
            turns.append(session.send(message))
    return turns


def test_repl_streams_replies_and_keeps_the_cache(run_dir):
    stdin = (
        "/system Be brief.\nhello\nhow are you?\n/reset\n\nhello\n/help\n/bogus\n/quit\nignored\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "framework", "chat", str(run_dir), "--verbose", *GREEDY],
        input=stdin.encode(), capture_output=True, timeout=300,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )  # fmt: skip
    stdout, stderr = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 0, stderr
    turns = expected_turns(run_dir, ["hello", "how are you?", None, "hello"])
    assert stdout == "".join(t.text + "\n" for t in turns)  # the replies, as the session gives
    fed = [line for line in stderr.splitlines() if ": fed " in line]
    counts = [int(line.split(": fed ")[1].split()[0]) for line in fed]
    cached = [int(line.split(" on top of ")[1].split()[0]) for line in fed]
    assert counts == [t.fed for t in turns] and cached == [t.cached for t in turns]
    assert cached[0] == 0 and cached[1] > 0 and cached[2] == 0  # the 2nd turn fed the delta
    assert counts[2] == counts[0]  # after /reset the conversation is fed from the start again
    assert "/system TEXT" in stderr and "unknown command /bogus" in stderr
    stops = {"length": "--max_new_tokens", "end_of_turn": ": fed "}
    assert all(stops[t.finish_reason] in stderr for t in turns)


def test_json_batch_with_malformed_lines(run_dir, tmp_path, capsys):
    good = {"messages": [{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": "hello"}]}  # fmt: skip
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({"messages": [{"role": "wizard", "content": "hi"}]}),
        json.dumps({"messages": []}),
        "",
        json.dumps({"messages": [{"role": "user", "content": "how are you?"}]}),
    ]
    conversations = tmp_path / "conversations.jsonl"
    conversations.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out" / "answers.jsonl"
    code = cli.main(["chat", str(run_dir), "--json", str(conversations), "--output", str(out),
                     *GREEDY])  # fmt: skip
    assert code == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["index"] for r in records] == [0, 1, 2, 3, 4]
    assert [("error" in r) for r in records] == [False, True, True, True, False]
    assert "not JSON" in records[1]["error"] and "wizard" in records[2]["error"]
    assert "no messages" in records[3]["error"]
    for record in (records[0], records[4]):
        assert record["finish_reason"] in ("end_of_turn", "length")
        assert len(record["tokens"]) == len(record["logprobs"]) <= NEW
    (turn,) = expected_turns(run_dir, ["hello"])
    assert records[0]["completion"] == turn.text  # batched equals the interactive session
    assert records[0]["tokens"] == turn.tokens
    np.testing.assert_allclose(records[0]["logprobs"], turn.logprobs, atol=1e-5, rtol=0)
    assert "5 conversations, 3 malformed" in capsys.readouterr().err

    code = cli.main(["chat", str(run_dir), "--json", str(conversations), *GREEDY])
    assert code == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == records


def test_exit_2_without_template_or_tokens_or_files(tmp_path, run_dir, capsys):
    bare = tmp_path / "bare"
    write_run(bare, template=None)
    assert cli.main(["chat", str(bare), "--dry_run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--template NAME" in err[0]
    assert cli.main(["chat", str(bare), "--template", "chatml", "--dry_run"]) == 0
    capsys.readouterr()

    llama3 = tmp_path / "llama3"
    write_run(llama3, template="llama3")
    assert cli.main(["chat", str(llama3), "--dry_run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "<|begin_of_text|>" in err[0] and "<|eot_id|>" in err[0]

    assert cli.main(["chat", str(tmp_path / "nowhere")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    assert cli.main(["chat", str(run_dir), "--json", str(tmp_path / "none.jsonl")]) == 2
    assert "none.jsonl: no such file" in capsys.readouterr().err
    assert cli.main(["chat", str(bare), "--template", "chatmll", "--dry_run"]) == 2
    assert "chatml" in capsys.readouterr().err
