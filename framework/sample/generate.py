"""Text generation: prefill + decode with a KV cache, sampler chains, streaming.

Sampler chains (pure functions, see ``plugins/samplers/__init__.py`` for each sampler):

* :func:`canonical_chain` turns the gin value of ``sample.sampler`` (one sampler, a list, or
  ``None``) into a tuple sorted into the canonical order — penalties → temperature → top-k →
  top-p → min-p → greedy (Hugging Face's order). A gin list in another order is *sorted*, not
  rejected; two samplers of the same stage are rejected.
* :func:`apply_chain` maps logits ``[B, V]`` through the chain; :func:`select_tokens` draws one
  token per row with per-row keys (``argmax`` when the chain is deterministic).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any

import gin
import jax
import jax.numpy as jnp

from framework.core.errors import ConfigError
from framework.models import backend

# ------------------------------------------------------------------------------------------------
# Sampler chains


def canonical_chain(sampler: Any) -> tuple[Any, ...]:
    """The samplers of ``sampler`` (None, one, or a sequence) in canonical order."""
    if sampler is None:
        items: list[Any] = []
    elif isinstance(sampler, Sequence) and not isinstance(sampler, str):
        items = list(sampler)
    else:
        items = [sampler]
    for item in items:
        if not callable(item) or not hasattr(item, "stage"):
            raise ConfigError(
                f"sample.sampler: {item!r} is not a sampler plugin (use @samplers.NAME(); "
                "list them with `deepdive plugins list --kind samplers`)"
            )
    by_stage: dict[int, Any] = {}
    for item in items:
        if item.stage in by_stage:
            raise ConfigError(
                f"sample.sampler: {type(by_stage[item.stage]).__name__} and {type(item).__name__} "
                "fill the same stage of the chain; keep one"
            )
        by_stage[item.stage] = item
    return tuple(by_stage[s] for s in sorted(by_stage))


def describe_chain(chain: Sequence[Any]) -> str:
    """``temperature(temperature=0.8) → top_p(p=0.95)``; ``sampling (temperature 1)`` if empty."""
    if not chain:
        return "sampling from the full distribution (temperature 1)"
    return " → ".join(repr(s) for s in chain)


def is_deterministic(chain: Sequence[Any]) -> bool:
    """True when the chain ends in a single token (greedy, or temperature 0)."""
    return any(bool(getattr(s, "deterministic", False)) for s in chain)


def apply_chain(chain: Sequence[Any], logits: jax.Array, seen: jax.Array | None) -> jax.Array:
    """Logits ``float32[B, V]`` after every sampler of ``chain`` (removed tokens are -inf)."""
    logits = logits.astype(jnp.float32)
    for sampler in chain:
        logits = sampler(logits, seen)
    return logits


def select_tokens(
    chain: Sequence[Any], logits: jax.Array, seen: jax.Array | None, keys: jax.Array
) -> jax.Array:
    """One token per row ``int32[B]``: a draw from softmax(chain(logits)) with row ``b``'s key.

    ``keys`` is a ``[B]`` array of typed PRNG keys (``jax.random.key``). Deterministic chains
    take the argmax and use no randomness.
    """
    if is_deterministic(chain):
        return first_argmax(apply_chain(chain, logits, seen))
    warped = apply_chain(chain, logits, seen)
    draw = jax.vmap(lambda key, row: jax.random.categorical(key, row))
    return draw(keys, warped).astype(jnp.int32)


def first_argmax(logits: jax.Array) -> jax.Array:
    """``jnp.argmax(logits, axis=-1)`` as int32: the first maximal (or first NaN) entry of a row.

    Written as a max and a min rather than XLA's (value, index) reduction, which XLA:CPU runs
    about twice as slowly: over GPT-2's 50,257 logits that was 1 % of a decode step.
    """
    top = jnp.max(logits, axis=-1, keepdims=True)  # NaN when the row has one
    hit = (logits == top) | jnp.isnan(logits)
    ids = jnp.arange(logits.shape[-1], dtype=jnp.int32)
    return jnp.min(jnp.where(hit, ids, logits.shape[-1]), axis=-1)


def _abstract(tree: Any) -> bool:
    leaves = jax.tree.leaves(tree)
    return bool(leaves) and isinstance(leaves[0], jax.ShapeDtypeStruct)


def _axes(split: Any) -> tuple[str, ...]:
    return (split,) if isinstance(split, str) else tuple(split)


def row_keys(seed: int, rows: Sequence[tuple[int, int]]) -> jax.Array:
    """Typed PRNG keys, one per ``(prompt_index, sample_index)``: independent of batching."""
    base = jax.random.key(seed)
    prompt_ids = jnp.asarray([p for p, _ in rows], jnp.uint32)
    sample_ids = jnp.asarray([s for _, s in rows], jnp.uint32)
    fold = jax.random.fold_in
    return jax.vmap(lambda p, s: fold(fold(base, p), s))(prompt_ids, sample_ids)


# ------------------------------------------------------------------------------------------------
# The generation engine


def bucket_length(length: int, minimum: int = 16) -> int:
    """The padded prompt length: the next power of two ≥ ``length`` (at least ``minimum``)."""
    size = minimum
    while size < length:
        size *= 2
    return size


@dataclasses.dataclass
class Completion:
    """One generated sequence: its tokens, their log-probabilities and why it ended.

    ``logprobs[i]`` is ``log p(tokens[i] | prefix)`` under the *model's* distribution (raw
    logits, before the sampler chain), as vLLM reports them by default. ``finish_reason`` is
    ``"eos"`` (the end-of-text token, kept in ``tokens``, not in ``text``), ``"stop"`` (a stop
    string; ``text`` ends before it) or ``"length"`` (``max_new_tokens`` reached).
    """

    prompt_index: int
    sample_index: int
    prompt_tokens: list[int]
    tokens: list[int]
    logprobs: list[float]
    finish_reason: str
    text: str | None = None


@dataclasses.dataclass
class GenerationStats:
    """Timing of one :meth:`Generator.generate` call (seconds; tokens are generated tokens)."""

    prefill_s: float = 0.0
    decode_s: float = 0.0
    tokens: int = 0
    batches: int = 0

    @property
    def tokens_per_s(self) -> float:
        total = self.prefill_s + self.decode_s
        return self.tokens / total if total > 0 else 0.0


def forward_last(model, tokens, cache, mask, last) -> tuple[jax.Array, Any]:
    """Feed ``tokens`` [B, T] into ``cache``; returns the logits [B, V] at position ``last`` and
    the cache. Models with ``features``/``logits`` project only that position to the vocabulary."""
    if hasattr(model, "features") and hasattr(model, "logits"):
        hidden, cache = model.features(tokens, cache=cache, token_mask=mask)
        return model.logits(jax.lax.dynamic_slice_in_dim(hidden, last, 1, axis=1))[:, 0], cache
    logits, cache = model(tokens, cache=cache, token_mask=mask)
    return jax.lax.dynamic_slice_in_dim(logits, last, 1, axis=1)[:, 0], cache


def _seen_init(tokens: jax.Array, mask: jax.Array, vocab: int) -> jax.Array:
    """bool[B, V]: which token ids occur among the real (masked-in) tokens of each row."""
    rows = jnp.arange(tokens.shape[0])[:, None]
    seen = jnp.zeros((tokens.shape[0], vocab), jnp.bool_)
    return seen.at[rows, tokens].max(mask)


def _token_logprob(logits: jax.Array, tokens: jax.Array) -> jax.Array:
    """log softmax(logits)[token] per row, without writing the whole log-softmax out."""
    logits = logits.astype(jnp.float32)
    picked = jnp.take_along_axis(logits, tokens[:, None], axis=-1)[:, 0]
    return picked - jax.nn.logsumexp(logits, axis=-1)


class Generator:
    """Prefill + decode with a KV cache for one model and one sampler chain.

    * Fixed shapes: prompts are left-padded to a power-of-two bucket (``token_mask`` marks the
      real tokens, positions count real tokens only), the cache holds ``bucket + max_new_tokens``
      slots, and a batch always has ``batch_size`` rows (short batches are filled with dummy
      rows). So prefill compiles once per bucket and decode once per (bucket, max_new_tokens).
    * The decode loop is one ``jax.lax.while_loop`` compiled as a whole: no Python per token. It
      runs ``stream_every`` steps per call (or all of them when 0) so the caller can stream text
      and check stop strings between calls; the state is donated, so nothing is copied.
    * Randomness: row ``(prompt i, sample j)`` uses ``fold_in(fold_in(key(seed), i), j)`` and
      step ``t`` folds in ``t``: a given seed gives the same text whatever the batching.
    * Sharding: with ``mesh`` and ``rules`` the parameters are laid out by the training rules
      (``framework/train/sharding.py``) and the batch split over the batch axes; jit propagates the
      layout to the cache. Without them everything lives on the default device.
    """

    def __init__(
        self,
        model: Any,
        model_config: Any,
        sampler: Any = None,
        *,
        eos_id: int | None = None,
        batch_size: int = 8,
        mesh: Any = None,
        rules: Any = None,
        min_bucket: int = 16,
        token_limit: int | None = None,
    ):
        from flax import nnx

        self.model_config = model_config
        # ids >= token_limit (a model vocabulary padded past the tokenizer's ids) are never drawn
        self.token_limit = token_limit
        self.chain = canonical_chain(sampler)
        self.eos_id = eos_id
        self.pad_id = 0 if eos_id is None else int(eos_id)
        self.batch_size = int(batch_size)
        self.min_bucket = int(min_bucket)
        self.max_seq_len = int(getattr(model_config, "max_seq_len", 0) or 0)
        self.vocab_size = int(model_config.vocab_size)
        self.needs_seen = any(
            getattr(s, "stage", None) == 0 for s in self.chain
        )  # penalties read the tokens seen so far
        self.mesh, self.rules = mesh, rules
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        if mesh is not None:
            from framework.train import sharding

            shardings = sharding.state_shardings(params, mesh, rules or ())
            if _abstract(params):  # ahead-of-time compilation: shapes only, nothing to place
                params = jax.tree.map(
                    lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                    params,
                    shardings,
                )
            else:
                params = jax.device_put(params, shardings)
            divisor = sharding.batch_divisor(mesh, rules or ())
            if self.batch_size % divisor:
                raise ConfigError(
                    f"sample.batch_size = {self.batch_size} is not a multiple of the {divisor} "
                    "ways the mesh splits the batch"
                )
            self._batch_sharding = sharding.batch_sharding(mesh, rules or ())
        else:
            self._batch_sharding = None
        self.params, self.rest = params, rest
        self._graphdef = graphdef
        devices = jax.devices()[:1] if mesh is None else list(mesh.devices.flat)
        self._prefill = jax.jit(
            backend.compiled_for(self._prefill_fn, devices), static_argnames=("max_new_tokens",)
        )
        self._decode = jax.jit(
            backend.compiled_for(self._decode_fn, devices),
            donate_argnums=(2,),
            compiler_options=backend.compiler_options(devices),
        )

    def lower_decode(self, prompt_len: int, max_new_tokens: int) -> Any:
        """The decode loop lowered for a batch of ``prompt_len``-token prompts and
        ``max_new_tokens`` new tokens, from abstract arguments (``deepdive compile --decode``)."""
        bucket = bucket_length(prompt_len, self.min_bucket)
        batch = (self.batch_size, bucket)
        tokens = jax.ShapeDtypeStruct(batch, jnp.int32, sharding=self._batch_sharding)
        mask = jax.ShapeDtypeStruct(batch, jnp.bool_, sharding=self._batch_sharding)
        keys = jax.eval_shape(lambda: row_keys(0, [(i, 0) for i in range(self.batch_size)]))
        state = jax.eval_shape(
            functools.partial(self._prefill_fn, max_new_tokens=max_new_tokens),
            self.params, self.rest, tokens, mask, keys,
        )  # fmt: skip
        if self.mesh is not None:  # rows split like the batch (the cache's rows are B x K)
            state = jax.tree.map(self._state_layout, state)
        return self._decode.lower(
            self.params, self.rest, state, jax.ShapeDtypeStruct((), jnp.int32)
        )

    def _state_layout(self, leaf: jax.ShapeDtypeStruct) -> jax.ShapeDtypeStruct:
        split = self._batch_sharding.spec[0] if len(self._batch_sharding.spec) else None
        ways = self._batch_sharding.mesh.shape
        parts = 1 if split is None else math.prod(ways[a] for a in _axes(split))
        spec = (split,) if leaf.ndim and leaf.shape[0] % parts == 0 else ()
        sharding = jax.sharding.NamedSharding(
            self._batch_sharding.mesh, jax.sharding.PartitionSpec(*spec)
        )
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding)

    # -- compiled pieces ------------------------------------------------------------------------
    def _model(self, params, rest):
        from flax import nnx

        return nnx.merge(self._graphdef, params, rest)

    def _prefill_fn(self, params, rest, tokens, mask, keys, *, max_new_tokens: int):
        """Run the prompt through the model, draw the first token; returns the decode state."""
        from framework.models.kv_cache import init_cache

        model = self._model(params, rest)
        batch, bucket = tokens.shape
        cache = init_cache(self.model_config, batch, bucket + max_new_tokens)
        # the last slot is always real (prompts are left-padded)
        logits, cache = forward_last(model, tokens, cache, mask, bucket - 1)  # [B, V]
        seen = _seen_init(tokens, mask, logits.shape[-1]) if self.needs_seen else None
        return self.decode_state(cache, logits, seen, keys, max_new_tokens)

    def decode_state(self, cache, logits, seen, keys, max_new_tokens: int) -> dict[str, Any]:
        """The decode loop's state once the prompt is in ``cache``: the first token drawn from
        ``logits`` [B, V] (step 0 of each row's key), the output buffers, the done flags."""
        batch = logits.shape[0]
        step_keys = jax.vmap(jax.random.fold_in, (0, None))(keys, 0)
        first = select_tokens(self.chain, self.drawable(logits), seen, step_keys)
        out_tokens = jnp.full((batch, max_new_tokens), self.pad_id, jnp.int32)
        out_logprobs = jnp.zeros((batch, max_new_tokens), jnp.float32)
        return {
            "cache": cache,
            "last": first,
            "t": jnp.ones((), jnp.int32),
            "tokens": out_tokens.at[:, 0].set(first),
            "logprobs": out_logprobs.at[:, 0].set(_token_logprob(logits, first)),
            "done": self._is_eos(first),
            "seen": None if seen is None else seen.at[jnp.arange(batch), first].set(True),
            "keys": keys,
        }

    def drawable(self, logits: jax.Array) -> jax.Array:
        """``logits`` [B, V] with the ids the tokenizer lacks (>= ``token_limit``) made
        impossible: a padded vocabulary's untrained rows are never sampled. Reported
        log-probabilities stay the model's own, over its whole vocabulary."""
        if self.token_limit is None or self.token_limit >= logits.shape[-1]:
            return logits
        allowed = jnp.arange(logits.shape[-1]) < self.token_limit
        return jnp.where(allowed, logits, -jnp.inf)

    def _is_eos(self, tokens):
        if self.eos_id is None:
            return jnp.zeros(tokens.shape, jnp.bool_)
        return tokens == self.eos_id

    def _decode_fn(self, params, rest, state, stop_at):
        """Decode until step ``stop_at`` (exclusive) or until every row is done."""
        model = self._model(params, rest)
        max_new = state["tokens"].shape[1]
        rows = jnp.arange(state["tokens"].shape[0])

        def cond(s):
            return (s["t"] < jnp.minimum(stop_at, max_new)) & ~jnp.all(s["done"])

        def body(s):
            logits, cache = model(s["last"][:, None], cache=s["cache"])
            logits = logits[:, 0]  # [B, V]
            step_keys = jax.vmap(jax.random.fold_in, (0, None))(s["keys"], s["t"])
            token = select_tokens(self.chain, self.drawable(logits), s["seen"], step_keys)
            logprob = _token_logprob(logits, token)
            token = jnp.where(s["done"], self.pad_id, token)
            logprob = jnp.where(s["done"], 0.0, logprob)
            seen = s["seen"]
            if seen is not None:
                seen = seen.at[rows, token].max(~s["done"])
            return {
                "cache": cache,
                "last": token,
                "t": s["t"] + 1,
                "tokens": jax.lax.dynamic_update_slice(s["tokens"], token[:, None], (0, s["t"])),
                "logprobs": jax.lax.dynamic_update_slice(
                    s["logprobs"], logprob[:, None], (0, s["t"])
                ),
                "done": s["done"] | self._is_eos(token),
                "seen": seen,
                "keys": s["keys"],
            }

        return jax.lax.while_loop(cond, body, state)

    # -- host side ------------------------------------------------------------------------------
    def _fit_prompt(self, prompt: Sequence[int], max_new_tokens: int) -> list[int]:
        prompt = [int(t) for t in prompt]
        if not prompt:
            if self.eos_id is None:
                raise ConfigError("an empty prompt needs an end-of-text token to start from")
            prompt = [self.eos_id]
        if self.max_seq_len:
            room = self.max_seq_len - max_new_tokens
            if room < 1:
                raise ConfigError(
                    f"max_new_tokens = {max_new_tokens} leaves no room for a prompt in the "
                    f"model's context of {self.max_seq_len} tokens"
                )
            prompt = prompt[-room:]  # keep the end of an over-long prompt
        return prompt

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        max_new_tokens: int = 256,
        num_samples: int = 1,
        seed: int = 0,
        stop_strings: Sequence[str] = (),
        decode: Any = None,
        stream_every: int = 0,
        on_update: Any = None,
        stats: GenerationStats | None = None,
    ) -> list[Completion]:
        """Complete every prompt ``num_samples`` times; results ordered by (prompt, sample).

        ``decode(ids) -> str`` turns tokens into text (needed for ``stop_strings`` and
        ``Completion.text``). ``on_update(completions_so_far)`` is called after the prefill and
        after every ``stream_every`` decode steps with the batch's partial completions.
        """
        import time

        import numpy as np

        if max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens = {max_new_tokens}: must be >= 1")
        if stop_strings and decode is None:
            raise ConfigError("stop strings need a tokenizer to decode the generated text")
        fitted = [self._fit_prompt(p, max_new_tokens) for p in prompts]
        rows = [(i, j) for i in range(len(fitted)) for j in range(num_samples)]
        rows.sort(key=lambda r: len(fitted[r[0]]))  # similar lengths share a bucket
        stats = stats if stats is not None else GenerationStats()
        results: dict[tuple[int, int], Completion] = {}
        for start in range(0, len(rows), self.batch_size):
            batch_rows = rows[start : start + self.batch_size]
            real = len(batch_rows)
            batch_rows = batch_rows + [batch_rows[-1]] * (self.batch_size - real)
            bucket = bucket_length(max(len(fitted[i]) for i, _ in batch_rows), self.min_bucket)
            tokens = np.full((self.batch_size, bucket), self.pad_id, np.int32)
            mask = np.zeros((self.batch_size, bucket), bool)
            for r, (i, _) in enumerate(batch_rows):
                prompt = fitted[i]
                tokens[r, bucket - len(prompt) :] = prompt
                mask[r, bucket - len(prompt) :] = True
            keys = row_keys(seed, batch_rows)
            tokens, mask = jnp.asarray(tokens), jnp.asarray(mask)
            if self._batch_sharding is not None:
                tokens = jax.device_put(tokens, self._batch_sharding)
                mask = jax.device_put(mask, self._batch_sharding)
            began = time.perf_counter()
            state = self._prefill(
                self.params, self.rest, tokens, mask, keys, max_new_tokens=max_new_tokens
            )
            jax.block_until_ready(state["tokens"])
            stats.prefill_s += time.perf_counter() - began
            began = time.perf_counter()
            stopped: dict[int, tuple[int, str]] = {}  # row -> (tokens kept, text)
            step = 1
            chunk = stream_every if stream_every > 0 else max_new_tokens
            while True:
                host = np.asarray(state["tokens"])
                done = np.asarray(state["done"])
                step = int(state["t"])
                partial = self._collect(
                    batch_rows[:real],
                    fitted,
                    host,
                    None,
                    done,
                    step,
                    decode,
                    stop_strings,
                    stopped,
                )
                if on_update is not None:
                    on_update(partial)
                finished = done.copy()
                for r in stopped:
                    finished[r] = True
                if step >= max_new_tokens or finished[:real].all():
                    break
                if stopped:
                    state["done"] = jnp.asarray(finished)
                    if self._batch_sharding is not None:
                        state["done"] = jax.device_put(state["done"], state["last"].sharding)
                state = self._decode(self.params, self.rest, state, jnp.int32(step + chunk))
            stats.decode_s += time.perf_counter() - began
            logprobs = np.asarray(state["logprobs"])
            final = self._collect(
                batch_rows[:real],
                fitted,
                host,
                logprobs,
                done,
                step,
                decode,
                stop_strings,
                stopped,
            )
            for row, completion in zip(batch_rows[:real], final, strict=True):
                results[row] = completion
                stats.tokens += len(completion.tokens)
            stats.batches += 1
        return [results[(i, j)] for i in range(len(fitted)) for j in range(num_samples)]

    def _collect(self, rows, fitted, tokens, logprobs, done, step, decode, stop_strings, stopped):
        """Completions of the batch's real rows from the host copy of the decode state."""
        out = []
        for r, (i, j) in enumerate(rows):
            seq = [int(t) for t in tokens[r, :step]]
            reason = "length"
            if self.eos_id is not None and self.eos_id in seq:
                seq = seq[: seq.index(self.eos_id) + 1]
                reason = "eos"
            text = None
            if r in stopped:
                keep, text = stopped[r]
                seq, reason = seq[:keep], "stop"
            elif decode is not None:
                body = seq[:-1] if reason == "eos" else seq
                text = decode(body)
                if stop_strings:
                    hit = _first_stop(text, stop_strings)
                    if hit is not None:
                        keep = _tokens_to_cover(body, hit, stop_strings, decode)
                        text = text[:hit]
                        stopped[r] = (keep, text)
                        seq, reason = seq[:keep], "stop"
            lps = [] if logprobs is None else [float(x) for x in logprobs[r, : len(seq)]]
            out.append(Completion(i, j, list(fitted[i]), seq, lps, reason, text))
        return out


def _first_stop(text: str, stop_strings: Sequence[str]) -> int | None:
    """Index in ``text`` where the earliest stop string begins (None when there is none)."""
    hits = [text.find(s) for s in stop_strings if s]
    hits = [h for h in hits if h >= 0]
    return min(hits) if hits else None


def _tokens_to_cover(seq, hit, stop_strings, decode) -> int:
    """The fewest leading tokens whose text contains a stop string starting at ``hit``."""
    for keep in range(1, len(seq) + 1):
        found = _first_stop(decode(seq[:keep]), stop_strings)
        if found is not None:
            return keep
    return len(seq)


# ------------------------------------------------------------------------------------------------
# The top-level gin configurable of ``deepdive sample``


@gin.configurable("sample")
@dataclasses.dataclass(frozen=True)
class SampleConfig:
    """What ``deepdive sample`` does (gin: ``sample.NAME``; command-line flags override).

    ``sampler``: one sampler or a list, sorted into the canonical chain (see
    :func:`canonical_chain`); ``None`` samples from the full distribution.
    ``stop``: stop strings (the text ends before the first one). ``stop_at_eos``: end a
    sequence at the tokenizer's ``<|endoftext|>``. ``batch_size``: rows decoded together.
    ``stream_every``: decode steps per compiled call between terminal updates (0: all at once).
    ``step``: checkpoint step (None: the newest). ``mesh``/``logical_axis_rules``: shard the
    model as in training (None: one device).
    """

    model_dir: str = ""
    sampler: Any = None
    max_new_tokens: int = 256
    num_samples: int = 1
    seed: int = 0
    stop: tuple[str, ...] = ()
    stop_at_eos: bool = True
    batch_size: int = 8
    stream_every: int = 8
    step: int | None = None
    mesh: Any = None
    logical_axis_rules: Any = None


# ------------------------------------------------------------------------------------------------
# Continuing one sequence already held in a KV cache (``deepdive chat``: a conversation's cache
# is kept across turns, so a turn runs only its new tokens through the model)


@dataclasses.dataclass
class Continuation:
    """What one :meth:`CachedDecoder.generate` call produced.

    ``tokens``/``logprobs``/``finish_reason`` (``"eos"`` or ``"length"``) as in
    :class:`Completion`. ``cache`` holds every token fed so far and every generated token but
    the last: that one was drawn, not yet run through the model, so the next call feeds it
    first. ``fed`` is how many tokens this call ran through the model before generating.
    """

    tokens: list[int]
    logprobs: list[float]
    finish_reason: str
    cache: Any
    fed: int


class CachedDecoder:
    """One sequence kept in a KV cache between calls: new tokens are fed on top of what the cache
    holds (earlier tokens are not recomputed), then decoding runs with the ``generator``'s model,
    sampler chain, end token and compiled decode loop.

    * The cache has room for ``capacity`` real tokens (default: the model's context) plus
      ``min_bucket`` spare slots. New tokens are fed in power-of-two chunks (at least
      ``min_bucket`` slots, right-padded, padding marked invalid); the write index then moves back
      to just after the real tokens, so padding never keeps a slot, and each chunk size compiles
      once. The spare slots let the last chunk's padding run past ``capacity``.
    * Positions count real tokens (``KVCache.positions_for``), so feeding a conversation in
      pieces gives the logits of feeding it at once, up to float rounding.
    * Batch size 1: this serves one conversation; batches of independent prompts go through
      :meth:`Generator.generate`.
    """

    def __init__(self, generator: Generator, capacity: int | None = None):
        self.generator = generator
        self.capacity = int(capacity or generator.max_seq_len)
        if self.capacity < 2:
            raise ConfigError(
                f"{type(generator.model_config).__name__} has no max_seq_len: give the cache's "
                "capacity in tokens"
            )
        self.slots = self.capacity + generator.min_bucket
        mesh = generator.mesh
        devices = jax.devices()[:1] if mesh is None else list(mesh.devices.flat)
        self._extend = jax.jit(backend.compiled_for(self._extend_fn, devices), donate_argnums=(2,))
        self._start = jax.jit(self._start_fn, static_argnames=("max_new_tokens",))

    def new_cache(self) -> Any:
        """An empty cache of one row with ``capacity`` (+ spare) slots."""
        from framework.models.kv_cache import init_cache

        return init_cache(self.generator.model_config, 1, self.slots)

    # -- compiled pieces ------------------------------------------------------------------------
    def _extend_fn(self, params, rest, cache, tokens, count):
        """Feed ``tokens [1, T]`` whose first ``count`` are real at ``cache.index``; returns the
        cache (index advanced by ``count``) and the logits ``[1, V]`` after the last real one."""
        model = self.generator._model(params, rest)
        index = cache.index
        mask = jnp.arange(tokens.shape[1], dtype=jnp.int32)[None, :] < count
        logits, cache = forward_last(model, tokens, cache, mask, count - 1)
        return cache.replace(index=index + count), logits.astype(jnp.float32)

    def _start_fn(self, cache, logits, seen, keys, *, max_new_tokens: int):
        """The decode state of :meth:`Generator._prefill_fn`, from a filled cache and logits."""
        return self.generator.decode_state(cache, logits, seen, keys, max_new_tokens)

    # -- host side ------------------------------------------------------------------------------
    def feed(self, cache: Any, tokens: Sequence[int]) -> tuple[Any, jax.Array]:
        """Run ``tokens`` through the model on top of ``cache`` (donated: use the returned one);
        returns the cache and the logits ``float32[1, V]`` after the last token."""
        import numpy as np

        tokens = [int(t) for t in tokens]
        if not tokens:
            raise ConfigError("nothing to feed: a continuation needs at least one new token")
        at = int(cache.index)
        if at + len(tokens) > self.capacity:
            raise ConfigError(
                f"{at} cached + {len(tokens)} new tokens exceed the cache's {self.capacity}"
            )
        g, minimum, pos, logits = self.generator, self.generator.min_bucket, 0, None
        while pos < len(tokens):
            size = bucket_length(len(tokens) - pos, minimum)
            while size > minimum and at + size > self.slots:
                size //= 2
            chunk = tokens[pos : pos + size]
            padded = np.full((1, size), g.pad_id, np.int32)
            padded[0, : len(chunk)] = chunk
            cache, logits = self._extend(
                g.params, g.rest, cache, jnp.asarray(padded), jnp.int32(len(chunk))
            )
            at, pos = at + len(chunk), pos + len(chunk)
        return cache, logits

    def generate(
        self,
        cache: Any,
        new_tokens: Sequence[int],
        *,
        max_new_tokens: int,
        limit: int | None = None,
        seed: int = 0,
        row: int = 0,
        seen_tokens: Sequence[int] = (),
        stream_every: int = 1,
        on_update: Any = None,
        stats: GenerationStats | None = None,
    ) -> Continuation:
        """Feed ``new_tokens`` on top of ``cache`` (donated), then generate up to
        ``max_new_tokens`` (fewer when ``limit`` or the cache's capacity says so).

        ``max_new_tokens`` fixes the compiled shapes (keep it constant across calls);
        ``limit`` only ends the loop earlier. Randomness: row ``(row, 0)`` of ``seed``, as
        :func:`row_keys` draws it. ``seen_tokens``: the tokens already in the cache, for
        penalty samplers. ``on_update(tokens_so_far)`` runs after the first token and after
        every ``stream_every`` decode steps (the end token, when reached, included).
        """
        import time

        import numpy as np

        g = self.generator
        if max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens = {max_new_tokens}: must be >= 1")
        stats = stats if stats is not None else GenerationStats()
        began = time.perf_counter()
        cache, logits = self.feed(cache, new_tokens)
        room = self.capacity - int(cache.index)
        budget = min(max_new_tokens, room, limit if limit is not None else max_new_tokens)
        if budget < 1:
            raise ConfigError(f"no room left in the cache's {self.capacity} tokens to generate")
        seen = None
        if g.needs_seen:
            seen_host = np.zeros((1, g.vocab_size), bool)
            seen_host[0, [int(t) for t in (*seen_tokens, *new_tokens)]] = True
            seen = jnp.asarray(seen_host)
        keys = row_keys(seed, [(row, 0)])
        state = self._start(cache, logits, seen, keys, max_new_tokens=max_new_tokens)
        jax.block_until_ready(state["tokens"])
        stats.prefill_s += time.perf_counter() - began
        began = time.perf_counter()
        chunk = stream_every if stream_every > 0 else budget
        while True:
            step = int(state["t"])
            tokens = [int(t) for t in np.asarray(state["tokens"])[0, :step]]
            done = bool(np.asarray(state["done"])[0])
            if on_update is not None:
                on_update(tokens)
            if done or step >= budget:
                break
            state = g._decode(g.params, g.rest, state, jnp.int32(min(step + chunk, budget)))
        stats.decode_s += time.perf_counter() - began
        stats.tokens += len(tokens)
        stats.batches += 1
        logprobs = [float(x) for x in np.asarray(state["logprobs"])[0, : len(tokens)]]
        reason = "eos" if done else "length"
        return Continuation(tokens, logprobs, reason, state["cache"], len(new_tokens))
