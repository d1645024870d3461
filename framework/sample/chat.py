"""Multi-turn chat with a chat template, keeping the KV cache across turns (``deepdive chat``).

A :class:`ChatSession` holds a conversation (system prompt, user and assistant messages) and
the KV cache of its tokens. A turn renders the whole conversation with the template, checks
that what the cache already holds is a prefix of that text (the *prefix property*), and feeds
only the rest: the end of the previous assistant turn, the new user message and the generation
prompt. Earlier turns are never recomputed while the template keeps the property; when it does
not (a template that re-renders earlier turns differently) or the conversation outgrows the
model's context (the oldest turns are dropped), the whole conversation is fed again, with a
note saying why.

Templates are ``templates`` plugins (``plugins/templates/``): ``render(messages,
add_generation_prompt) -> [(text, is_assistant)]``, ``special_tokens`` and ``end_of_turn``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from framework.core.errors import ConfigError, InputError
from framework.sample.generate import CachedDecoder, GenerationStats

Message = Mapping[str, Any]


# ------------------------------------------------------------------------------------------------
# Template and tokenizer helpers (shared with the batch mode of ``deepdive chat``)


def render_text(template: Any, messages: Sequence[Message], generation_prompt: bool) -> str:
    """The template's chat text of ``messages`` (its segments joined)."""
    return "".join(text for text, _ in template.render(list(messages), generation_prompt))


def encode(tokenizer: Any, template: Any, text: str) -> list[int]:
    """Token ids of chat text: the template's control tokens as special ids, any other
    special-token name (``<|endoftext|>`` typed by the user) as plain text."""
    allowed = set(template.special_tokens)
    try:
        return list(tokenizer.encode(text, allowed_special=allowed, disallowed_special=()))
    except TypeError:  # a tokenizer without tiktoken's disallowed_special
        return list(tokenizer.encode(text, allowed_special=allowed))


def missing_special_tokens(tokenizer: Any, template: Any) -> list[str]:
    """The template's control tokens that the tokenizer has no id for."""
    known = getattr(tokenizer, "special_tokens", None) or {}
    return [name for name in template.special_tokens if name not in known]


def check_compatible(tokenizer: Any, template: Any, name: str, vocab_size: int) -> int:
    """Raise ConfigError (one line) unless the tokenizer has every control token of the template
    inside the model's vocabulary; returns the end-of-turn token's id."""
    missing = missing_special_tokens(tokenizer, template)
    if missing:
        raise ConfigError(
            f"chat template {name!r} needs special tokens the run's tokenizer lacks: "
            f"{', '.join(missing)} (fine-tune with this template, or pick another with --template)"
        )
    ids = {t: int(tokenizer.special_tokens[t]) for t in template.special_tokens}
    outside = [f"{t} (id {i})" for t, i in ids.items() if i >= vocab_size]
    if outside:
        raise ConfigError(
            f"chat template {name!r}: special tokens outside the model's vocabulary of "
            f"{vocab_size}: {', '.join(outside)}"
        )
    return ids[template.end_of_turn]


# ------------------------------------------------------------------------------------------------
# Streaming text


class TextStream:
    """Turns the growing token list of a reply into new text for ``write``: the end token is
    left out, and a trailing incomplete UTF-8 character (decoded as U+FFFD) is held back until
    the tokens that complete it arrive."""

    def __init__(
        self, decode: Callable[[list[int]], str], end_id: int, write: Callable[[str], Any]
    ):
        self.decode, self.end_id, self.write = decode, end_id, write
        self.printed = 0

    def update(self, tokens: Sequence[int], final: bool = False) -> None:
        body = list(tokens[:-1] if tokens and tokens[-1] == self.end_id else tokens)
        text = self.decode(body)
        end = len(text)
        while not final and end > self.printed and text[end - 1] == "\ufffd":
            end -= 1
        if end > self.printed:
            self.write(text[self.printed : end])
            self.printed = end


# ------------------------------------------------------------------------------------------------
# The session


@dataclasses.dataclass
class Turn:
    """One assistant reply.

    ``tokens``/``logprobs``: the generated tokens (the end-of-turn token included when reached)
    and their log-probabilities under the model. ``finish_reason``: ``"end_of_turn"``,
    ``"length"`` (``max_new_tokens``) or ``"context"`` (the model's context is full). ``fed``:
    tokens run through the model before generating (the delta, or the whole conversation when
    it was fed again); ``cached``: tokens the cache already held and were reused;
    ``prompt_tokens``: the whole conversation the reply continues. ``notes``: one line each for
    what the user should know (re-prefill, dropped turns, an empty reply).
    """

    text: str
    tokens: list[int]
    logprobs: list[float]
    finish_reason: str
    fed: int
    cached: int
    notes: list[str]
    stats: GenerationStats
    prompt_tokens: list[int]  # the conversation the reply continues (cached + fed)


class ChatSession:
    """A conversation with one model, its KV cache kept across turns.

    ``decoder`` (a :class:`CachedDecoder` whose generator stops at the template's end-of-turn
    token) runs the model; ``tokens`` is the conversation as token ids: what the cache holds,
    plus the last generated token, which the next turn feeds first. ``reserve`` tokens of the
    context are kept free for a reply when deciding whether old turns must be dropped (default:
    ``max_new_tokens``, at most half the context).
    """

    def __init__(
        self,
        decoder: CachedDecoder,
        tokenizer: Any,
        template: Any,
        *,
        max_new_tokens: int = 256,
        seed: int = 0,
        system: str | None = None,
        stream_every: int = 1,
        reserve: int | None = None,
    ):
        self.decoder, self.tokenizer, self.template = decoder, tokenizer, template
        self.max_new_tokens = int(max_new_tokens)
        self.seed = int(seed)
        self.stream_every = int(stream_every)
        self.context = decoder.capacity
        self.reserve = int(
            reserve if reserve is not None else min(max_new_tokens, self.context // 2)
        )
        self.end_id = int(tokenizer.special_tokens[template.end_of_turn])
        if decoder.generator.eos_id != self.end_id:
            raise ConfigError(
                f"the decoder stops at token {decoder.generator.eos_id}, the template's "
                f"end of turn {template.end_of_turn!r} is {self.end_id}"
            )
        self.system = system or None
        self.history: list[dict[str, str]] = []
        self.tokens: list[int] = []
        self.turns = 0  # replies generated (each draws with its own random row)
        self.fed_total = 0  # tokens run through the model over the session
        self._cache: Any = None
        self._cached = 0  # tokens the cache holds (tokens[:_cached])

    # -- conversation state ---------------------------------------------------------------------
    @property
    def messages(self) -> list[dict[str, str]]:
        """The conversation as OpenAI-style messages (the system prompt first, when set)."""
        system = [{"role": "system", "content": self.system}] if self.system else []
        return system + list(self.history)

    def reset(self) -> None:
        """Forget the history and the cache (the system prompt stays)."""
        self.history, self.tokens = [], []
        self._cache, self._cached = None, 0

    def set_system(self, text: str | None) -> None:
        """Set (or, with None/empty, clear) the system prompt; starts a new conversation."""
        self.system = (text or "").strip() or None
        self.reset()

    # -- a turn ---------------------------------------------------------------------------------
    def send(
        self,
        text: str,
        on_text: Callable[[str], Any] | None = None,
        on_note: Callable[[str], Any] | None = None,
    ) -> Turn:
        """Add the user message ``text``, generate the reply (streamed to ``on_text`` piece by
        piece as it is produced) and add it to the history. Notes (a re-prefill, dropped turns)
        go to ``on_note`` as they arise, before the reply, and into :attr:`Turn.notes`.

        A message that cannot be sent (too long for the context, unrenderable) raises
        InputError and leaves the conversation as it was.
        """
        user = {"role": "user", "content": text}
        notes: list[str] = []
        feed, fresh = self._plan(user, notes)
        for note in notes:
            if on_note is not None:
                on_note(note)
        if fresh:
            self._cache, self._cached, self.tokens = self.decoder.new_cache(), 0, []
        cached = self._cached
        prompt = self.tokens[:cached] + feed
        stream = TextStream(self.tokenizer.decode, self.end_id, on_text) if on_text else None
        stats = GenerationStats()
        cache, self._cache = self._cache, None  # donated to the decoder
        result = self.decoder.generate(
            cache,
            feed,
            max_new_tokens=self.max_new_tokens,
            seed=self.seed,
            row=self.turns,
            seen_tokens=self.tokens[:cached],
            stream_every=self.stream_every,
            on_update=stream.update if stream else None,
            stats=stats,
        )
        self.turns += 1
        self.fed_total += len(feed)
        self._cache = result.cache
        self.tokens = prompt + result.tokens
        self._cached = len(self.tokens) - 1
        if stream is not None:
            stream.update(result.tokens, final=True)
        ended = result.finish_reason == "eos"
        body = result.tokens[:-1] if ended else result.tokens
        reply = self.tokenizer.decode(body)
        if ended:
            reason = "end_of_turn"
        elif len(result.tokens) < self.max_new_tokens:
            reason = "context"
        else:
            reason = "length"
        if reply.strip():
            self.history += [user, {"role": "assistant", "content": reply}]
        else:  # templates cannot render an empty message: leave the turn out
            self._cache, self._cached, self.tokens = None, 0, []
            notes.append("the reply was empty: the turn is left out of the history")
            if on_note is not None:
                on_note(notes[-1])
        return Turn(
            reply, result.tokens, result.logprobs, reason, len(feed), cached, notes, stats, prompt
        )

    def _render(self, history: Sequence[Message], user: Message) -> str:
        system = [{"role": "system", "content": self.system}] if self.system else []
        return render_text(self.template, [*system, *history, user], generation_prompt=True)

    def _plan(self, user: Message, notes: list[str]) -> tuple[list[int], bool]:
        """The tokens to feed for ``user``'s turn and whether they start a fresh cache (the
        oldest turns are dropped from the history when the conversation outgrows the context)."""
        target = self._render(self.history, user)
        feed, fresh = None, True
        if self._cache is not None and self.tokens:
            held = self.tokenizer.decode(self.tokens)
            if target.startswith(held):
                delta = encode(self.tokenizer, self.template, target[len(held) :])
                feed, fresh = self.tokens[self._cached :] + delta, False
            else:
                notes.append(
                    "the chat template renders the earlier turns differently from what the "
                    "cache holds (no prefix property): feeding the whole conversation again"
                )
        if fresh:
            feed = encode(self.tokenizer, self.template, target)
        kept = 0 if fresh else self._cached
        history, dropped = list(self.history), 0
        while kept + len(feed) + self.reserve > self.context and len(history) >= 2:
            history, dropped = history[2:], dropped + 1  # the oldest user message and its reply
            feed, fresh, kept = (
                encode(self.tokenizer, self.template, self._render(history, user)),
                True,
                0,
            )
        if kept + len(feed) >= self.context:
            raise InputError(
                f"the message is too long: {len(feed)} tokens with the template and the system "
                f"prompt, and the model's context is {self.context}"
            )
        if dropped:
            self.history = history
            notes.append(
                f"the conversation outgrew the model's context of {self.context} tokens: dropped "
                f"the oldest {dropped} turn{'s' if dropped > 1 else ''} and fed the rest again"
            )
        return feed, fresh
