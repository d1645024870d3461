"""Synthetic-skill data for post-training: conversations to fine-tune on, held-out prompts, and
exact-match scoring of ``deepdive chat --json`` completions against their answers.

The skills are plugins (``skills`` kind, ``plugins/skills/``); this module only draws from them.
Held-out prompts are drawn first, from their own seed, and no training conversation repeats a
held-out question, so the score measures the skill, not memory.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from framework.core.errors import InputError


def draw(skill: Any, count: int, seed: int, exclude: set[str] = frozenset()) -> list[dict]:
    """``count`` distinct examples ``{"messages", "answer"}`` whose last question is not in
    ``exclude`` (InputError when the skill has too few distinct questions)."""
    rng = np.random.default_rng(seed)
    seen, out = set(exclude), []
    attempts = 0
    while len(out) < count:
        attempts += 1
        if attempts > 50 * count + 1000:
            raise InputError(f"the skill has fewer than {count} distinct new questions")
        messages, answer = skill.example(rng)
        question = messages[-1]["content"]
        if question in seen:
            continue
        seen.add(question)
        out.append({"messages": messages, "answer": answer})
    return out


SYSTEM_PROMPTS = (
    "You are a helpful assistant.",
    "Answer briefly.",
    "You are a careful assistant. Reply with the answer only.",
)


def as_training(
    examples: Sequence[dict],
    seed: int = 0,
    multi_turn: float = 0.3,
    with_system: float = 0.2,
) -> list[dict]:
    """Conversations to fine-tune on, each answer becoming the assistant's turn. A share
    ``multi_turn`` of them chain two examples as successive turns, and a share
    ``with_system`` start with a system prompt, so a chat that goes on, or that sets
    ``/system``, stays in the distribution the model learned."""
    rng = np.random.default_rng([seed, 7])
    out, at = [], 0
    while at < len(examples):
        turns = 2 if rng.random() < multi_turn else 1
        messages: list[dict] = []
        if rng.random() < with_system:
            prompt = SYSTEM_PROMPTS[int(rng.integers(len(SYSTEM_PROMPTS)))]
            messages.append({"role": "system", "content": prompt})
        for e in examples[at : at + turns]:
            messages += [*e["messages"], {"role": "assistant", "content": e["answer"]}]
        out.append({"messages": messages})
        at += turns
    return out


def score(examples: Sequence[dict], completions: Sequence[dict]) -> dict[str, Any]:
    """Exact-match accuracy of ``completions`` (``deepdive chat --json`` lines, matched by
    ``index``) and the share that ended with the end-of-turn token."""
    by_index = {int(c["index"]): c for c in completions if "index" in c}
    correct = ended = errors = 0
    for index, example in enumerate(examples):
        completion = by_index.get(index)
        if completion is None or "error" in completion:
            errors += 1
            continue
        correct += completion.get("completion", "").strip() == example["answer"]
        ended += completion.get("finish_reason") == "end_of_turn"
    n = len(examples)
    return {
        "prompts": n,
        "exact_match": correct / n if n else 0.0,
        "ended_with_end_of_turn": ended / n if n else 0.0,
        "errors": errors,
    }


def read_jsonl(path: Any) -> list[dict]:
    """Every line of a JSONL file (InputError naming the file and line of a bad one)."""
    from framework.data.document import jsonl_lines

    out = []
    for line_no, line in jsonl_lines(path):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise InputError(f"{path}:{line_no}: bad JSON ({error.msg})") from None
    return out
