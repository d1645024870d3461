"""The ``conversations`` data source: chat conversations for supervised fine-tuning (SFT).

Input: JSON Lines (``.jsonl`` / ``.jsonl.gz``, local or in a bucket), one conversation per line
as OpenAI writes them: ``{"messages": [{"role": "system"|"user"|"assistant"|"tool",
"content": "..."}, ...]}``. Each conversation is rendered by a chat template plugin
(``templates`` kind), tokenized with the template's special tokens encoded atomically, and
masked so that only the assistant's tokens (content and end-of-turn token) are learned.
Conversations are packed whole into rows with segment ids (``framework.train.packing``):
attention never crosses two conversations and positions restart in each.

A malformed conversation (bad JSON, no messages, an unknown role, empty content, no assistant
turn, longer than the context) is never silently dropped: it is counted, reported, and written
with its reason to ``MODEL_DIR/rejected_conversations.jsonl``.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import numpy as np

from framework.core import paths
from framework.core.errors import ConfigError, InputError
from framework.core.registry import DATA, TEMPLATES
from framework.data.document import expand_inputs, jsonl_lines
from framework.sample import chat  # the same chat encoding as `deepdive chat`
from framework.train import packing
from framework.train.input import DataSource, local_batch_size

REJECTED_FILE = "rejected_conversations.jsonl"
CHAT_FILE = "chat.json"  # which template the run speaks, for `deepdive chat`


def tokenize_conversation(
    tokenizer: Any, template: Any, messages: list[dict[str, Any]]
) -> tuple[np.ndarray, np.ndarray]:
    """(token ids, loss mask) of one conversation, int32 each.

    The whole chat text is encoded at once, exactly as ``deepdive chat`` encodes a prompt (the
    template's tokens atomic, other special-token names typed in a message as plain text), then a
    token is learned when its first byte lies in an assistant span. Tokenizers that cannot
    say each token's bytes exactly fall back to encoding segment by segment.
    """
    from plugins.templates.chat import text_and_spans

    segments = template.render(messages)
    text, spans = text_and_spans(segments)
    ids = chat.encode(tokenizer, template, text)
    decode_bytes = getattr(tokenizer, "decode_bytes", None)
    lengths = [len(decode_bytes([i])) for i in ids] if decode_bytes else []
    data = text.encode("utf-8")
    if decode_bytes and sum(lengths) == len(data):
        byte_spans = [
            (len(text[:a].encode("utf-8")), len(text[:b].encode("utf-8"))) for a, b in spans
        ]
        starts = np.cumsum([0, *lengths[:-1]])
        learn = np.zeros(len(ids), np.int32)
        for a, b in byte_spans:
            learn[(starts >= a) & (starts < b)] = 1
        return np.asarray(ids, np.int32), learn
    ids, learn = [], []
    for piece, is_learned in segments:
        piece_ids = chat.encode(tokenizer, template, piece)
        ids += piece_ids
        learn += [int(is_learned)] * len(piece_ids)
    return np.asarray(ids, np.int32), np.asarray(learn, np.int32)


def _reason(record: Any) -> str | None:
    """Why a parsed line is not a trainable conversation (None when it is one)."""
    from plugins.templates.chat import check_messages

    if not isinstance(record, dict) or not isinstance(record.get("messages"), list):
        return "no 'messages' list"
    try:
        check_messages(record["messages"])
    except InputError as error:
        return str(error)
    if not any(m.get("role") == "assistant" for m in record["messages"]):
        return "no assistant turn"
    return None


@DATA.register("conversations")
class Conversations(DataSource):
    """Chat conversations (JSONL ``messages``) rendered by ``template``, for SFT.

    Args:
      path: a JSONL file, a glob, or a folder of ``*.jsonl*`` (local or a bucket URL).
      tokenizer: a tokenizer folder (e.g. the base run's ``MODEL_DIR/tokenizer``) that has the
        template's special tokens (``deepdive tokenizer add-special`` adds them).
      template: a chat template plugin name (``chatml``, ``llama3``; ``deepdive plugins list``).
      validation_path: conversations for validation; default: ``validation_fraction`` of
        ``path`` (a fixed random choice).
    """

    packed = True  # batches are {"tokens", "segment_ids", "loss_mask"} (framework.train.step)

    def __init__(
        self,
        path: str = "",
        tokenizer: Any = None,
        template: str = "chatml",
        validation_path: str | None = None,
        validation_fraction: float = 0.05,
    ):
        if not path:
            raise ConfigError("data.conversations: path is not set")
        if tokenizer is None or tokenizer == "":
            raise ConfigError("data.conversations: tokenizer is not set (a tokenizer folder)")
        if not 0.0 <= validation_fraction < 1.0:
            raise ConfigError(
                f"data.conversations: validation_fraction {validation_fraction} not in [0, 1)"
            )
        self.path, self.validation_path = str(path), validation_path
        self.template_name = template
        self.template = TEMPLATES.build(template)  # unknown: one line with suggestions
        if isinstance(tokenizer, str):
            self.tokenizer_path, self.tokenizer = tokenizer, None
        else:
            self.tokenizer = tokenizer
        self.validation_fraction = validation_fraction
        self._splits: dict[str, list[tuple[np.ndarray, np.ndarray]]] | None = None
        self._rejected: list[dict[str, Any]] = []
        self._seq_len: int | None = None
        self._total = 0

    # -- checks and loading ----------------------------------------------------------------------

    def _tokenizer(self) -> Any:
        if self.tokenizer is None:
            from framework.tokenize.files import load_tokenizer

            self.tokenizer = load_tokenizer(self.tokenizer_path)
        return self.tokenizer

    def check(self) -> None:
        """Validate-time checks, no training: the input exists and the tokenizer has the
        template's special tokens (one-line errors)."""
        expand_inputs(self.path)
        if self.validation_path:
            expand_inputs(self.validation_path)
        tokenizer = self._tokenizer()
        missing = chat.missing_special_tokens(tokenizer, self.template)
        if missing:
            where = self.tokenizer_path or getattr(tokenizer, "name", "the tokenizer")
            raise ConfigError(
                f"data.conversations: tokenizer {where} lacks the special tokens "
                f"{', '.join(missing)} of template {self.template_name!r} (add them with "
                f"`deepdive tokenizer add-special {where} --template {self.template_name} "
                "--output DIR`)"
            )

    def _read(self, pattern: str) -> list[tuple[str, Any]]:
        """(``file:line``, parsed record or the raw line when it is not JSON) of every line."""
        out = []
        for file in expand_inputs(pattern):
            for line_no, line in jsonl_lines(file):
                try:
                    out.append((f"{file}:{line_no}", json.loads(line)))
                except json.JSONDecodeError as error:
                    out.append((f"{file}:{line_no}", InputError(f"bad JSON ({error.msg})", line)))
        return out

    def _load(self, seq_len: int) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
        if self._splits is not None and self._seq_len == seq_len:
            return self._splits
        self.check()
        tokenizer, limit = self._tokenizer(), seq_len + 1
        self.vocab_size = int(tokenizer.vocab_size)
        self._rejected, self._seq_len = [], seq_len

        def encode(lines: list[tuple[str, Any]]) -> list[tuple[np.ndarray, np.ndarray]]:
            kept = []
            for where, record in lines:
                if isinstance(record, InputError):
                    reason, raw = record.args[0], record.args[1]
                else:
                    reason, raw = _reason(record), record
                if reason is None:
                    ids, learn = tokenize_conversation(tokenizer, self.template, record["messages"])
                    if len(ids) > limit:
                        reason = f"longer than the context ({len(ids)} tokens > {limit})"
                    else:
                        kept.append((ids, learn))
                if reason is not None:
                    self._rejected.append({"where": where, "reason": reason, "record": raw})
            return kept

        lines = self._read(self.path)
        self._total = len(lines)
        if self.validation_path:
            train, validation = encode(lines), None
            validation_lines = self._read(self.validation_path)
            self._total += len(validation_lines)
            validation = encode(validation_lines)
        else:
            conversations = encode(lines)
            order = np.random.default_rng(0).permutation(len(conversations))
            held = int(round(len(conversations) * self.validation_fraction))
            validation = [conversations[i] for i in sorted(order[:held])]
            train = [conversations[i] for i in sorted(order[held:])]
        if not train:
            raise InputError(f"data.conversations: {self.path} has no trainable conversation")
        self._splits = {"train": train, "validation": validation or train[:1]}
        return self._splits

    # -- the DataSource interface ------------------------------------------------------------------

    def train_iterator(self, batch_size, seq_len, seed, process_index=0, process_count=1,
                       vocab_size=None) -> packing.PackedEpochs:  # fmt: skip
        local_batch_size(batch_size, process_count)
        return packing.PackedEpochs(
            self._load(seq_len)["train"], seq_len + 1, batch_size, process_index, process_count,
            seed=seed,
        )  # fmt: skip

    def eval_batches(self, batch_size, seq_len, num_batches, process_index=0, process_count=1,
                     vocab_size=None) -> list[dict[str, np.ndarray]]:  # fmt: skip
        local_batch_size(batch_size, process_count)
        epochs = packing.PackedEpochs(
            self._load(seq_len)["validation"], seq_len + 1, batch_size, process_index,
            process_count, seed=None,
        )  # fmt: skip
        count = min(num_batches, max(1, epochs.rows_per_epoch // batch_size))
        return [next(epochs) for _ in range(count)]

    def write_run_files(self, model_dir: Any) -> None:
        """``chat.json`` (the template, for ``deepdive chat``) and the rejected conversations."""
        model_dir = paths.as_path(model_dir)
        paths.write_text(model_dir / CHAT_FILE, json.dumps({"template": self.template_name}))
        if not self._rejected:
            return
        lines = [json.dumps(r, ensure_ascii=False, default=str) for r in self._rejected]
        paths.write_text(model_dir / REJECTED_FILE, "\n".join(lines) + "\n")
        reasons = Counter(r["reason"].split(" (")[0] for r in self._rejected)
        top = "; ".join(f"{n} × {reason}" for reason, n in reasons.most_common(3))
        print(
            f"data.conversations: {len(self._rejected)} of {self._total} conversations rejected "
            f"({top}); written with their reasons to {model_dir / REJECTED_FILE}",
            flush=True,
        )

    def describe(self) -> str:
        count = len(self._splits["train"]) if self._splits else "?"
        return f"conversations {self.path} ({count} for training, template {self.template_name})"
