"""Chat templates as published with instruction-tuned models, re-implemented as plain Python.

Each renders exactly what Hugging Face's ``apply_chat_template`` renders from the model's
published Jinja template (``tests/templates`` checks it with transformers' own renderer) and
says which characters the assistant wrote: :func:`render` returns ``(text, is_assistant)``
segments whose concatenation is the chat text.

* ``chatml`` — ``<|im_start|>ROLE\\nCONTENT<|im_end|>\\n`` per message (OpenAI's ChatML, the
  template of OpenHermes, Qwen and many others without a default system prompt).
* ``llama3`` — Meta Llama 3 Instruct: ``<|begin_of_text|>`` once, then
  ``<|start_header_id|>ROLE<|end_header_id|>\\n\\nCONTENT<|eot_id|>`` with the content stripped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from framework.core.errors import InputError
from framework.core.registry import TEMPLATES

ROLES = ("system", "user", "assistant", "tool")
Segment = tuple[str, bool]  # (text, whether the loss learns it)


def check_messages(messages: Sequence[Mapping[str, Any]]) -> None:
    """Raise InputError (one line) for what no template can render: no messages, an unknown
    role, empty or non-text content."""
    if not messages:
        raise InputError("conversation has no messages")
    for index, message in enumerate(messages):
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise InputError(f"message {index}: unknown role {role!r} (use one of {list(ROLES)})")
        if not isinstance(content, str) or not content.strip():
            raise InputError(f"message {index} ({role}): empty or non-text content")


def merge(segments: list[Segment]) -> list[Segment]:
    """Adjacent segments with the same flag joined (one span per assistant turn)."""
    out: list[Segment] = []
    for text, learn in segments:
        if out and out[-1][1] == learn:
            out[-1] = (out[-1][0] + text, learn)
        elif text:
            out.append((text, learn))
    return out


@TEMPLATES.register("chatml")
class ChatML:
    """``<|im_start|>role\\ncontent<|im_end|>\\n``; the assistant learns its content and
    ``<|im_end|>`` (not the newline after it, which the next turn's prompt supplies)."""

    special_tokens = ("<|im_start|>", "<|im_end|>")
    end_of_turn = "<|im_end|>"

    def render(
        self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = False
    ) -> list[Segment]:
        check_messages(messages)
        segments: list[Segment] = []
        for message in messages:
            learn = message["role"] == "assistant"
            segments += [(f"<|im_start|>{message['role']}\n", False),
                         (message["content"] + "<|im_end|>", learn), ("\n", False)]  # fmt: skip
        if add_generation_prompt:
            segments.append(("<|im_start|>assistant\n", False))
        return merge(segments)


@TEMPLATES.register("llama3")
class Llama3:
    """Meta Llama 3 Instruct; the assistant learns its (stripped) content and ``<|eot_id|>``."""

    special_tokens = ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                      "<|eot_id|>")  # fmt: skip
    end_of_turn = "<|eot_id|>"

    def render(
        self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = False
    ) -> list[Segment]:
        check_messages(messages)
        segments: list[Segment] = [("<|begin_of_text|>", False)]
        for message in messages:
            learn = message["role"] == "assistant"
            header = f"<|start_header_id|>{message['role']}<|end_header_id|>\n\n"
            # Jinja's `trim` strips whitespace like Python's str.strip()
            segments += [(header, False), (message["content"].strip() + "<|eot_id|>", learn)]
        if add_generation_prompt:
            segments.append(("<|start_header_id|>assistant<|end_header_id|>\n\n", False))
        return merge(segments)


def text_and_spans(segments: list[Segment]) -> tuple[str, list[tuple[int, int]]]:
    """The chat text and the ``[start, end)`` character spans the loss learns."""
    text, spans, at = "", [], 0
    for piece, learn in segments:
        if learn:
            spans.append((at, at + len(piece)))
        text += piece
        at += len(piece)
    return text, spans
