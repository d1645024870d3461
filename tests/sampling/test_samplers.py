"""Samplers against their definitions: hand-computed sets, numpy references, Hugging Face's
logits processors, and chi-square tests of the drawn tokens over many draws (fixed seeds)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from framework.core.errors import ConfigError
from framework.core.registry import SAMPLERS
from framework.sample import generate as sample

N_DRAWS = 40_000


def make(name, **kw):
    return SAMPLERS.get(name)(**kw)


def softmax(x):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x[np.isfinite(x)].max())
    e[~np.isfinite(x)] = 0.0
    return e / e.sum()


# ---- independent references, written from each sampler's definition (float64 numpy) --------


def ref_temperature(logits, t):
    return softmax(np.asarray(logits) / t)


def ref_top_k(logits, k):
    probs = softmax(logits)
    kth = np.sort(probs)[::-1][k - 1]
    probs = np.where(probs >= kth, probs, 0.0)
    return probs / probs.sum()


def ref_top_p(logits, p):
    """Try set sizes 1, 2, ... of the most likely tokens; the first whose mass reaches p."""
    probs = softmax(logits)
    order = np.argsort(-probs, kind="stable")
    for size in range(1, len(probs) + 1):
        if probs[order[:size]].sum() >= p:
            break
    kept = np.zeros_like(probs)
    kept[order[:size]] = probs[order[:size]]
    return kept / kept.sum()


def ref_min_p(logits, min_p):
    probs = softmax(logits)
    kept = np.where(probs >= min_p * probs.max(), probs, 0.0)
    return kept / kept.sum()


def ref_repetition(logits, seen_ids, penalty):
    out = np.asarray(logits, np.float64).copy()
    for i in set(seen_ids):
        out[i] = out[i] * penalty if out[i] < 0 else out[i] / penalty
    return softmax(out)


# ---- helpers ------------------------------------------------------------------------------------

LOGITS = np.array([2.0, 1.5, 1.2, 0.9, 0.3, 0.0, -0.4, -1.0, -1.7, -2.5, -3.0, 0.6], np.float32)


def draw(chain, logits, n=N_DRAWS, seed=0, seen=None):
    chain = sample.canonical_chain(chain)
    batch = jnp.tile(jnp.asarray(logits)[None], (n, 1))
    seen_b = None if seen is None else jnp.tile(jnp.asarray(seen)[None], (n, 1))
    keys = jax.random.split(jax.random.key(seed), n)
    tokens = sample.select_tokens(chain, batch, seen_b, keys)  # eager: primitives compile once
    return np.bincount(np.asarray(tokens), minlength=len(logits))


def assert_matches(counts, probs, alpha=1e-3):
    """Nothing outside the support, and a chi-square goodness of fit inside it."""
    support = probs > 0
    assert counts[~support].sum() == 0, f"drew removed tokens: {counts} vs {probs}"
    if support.sum() == 1:
        assert counts[support].sum() == counts.sum()
        return
    expected = probs[support] * counts.sum()
    result = stats.chisquare(counts[support], expected)
    assert result.pvalue > alpha, f"chi-square p={result.pvalue:.2e}: {counts} vs {expected}"


# ---- chi-square tests against the definitions ---------------------------------------------------


def test_plain_sampling_matches_softmax():
    assert_matches(draw([], LOGITS), softmax(LOGITS))


@pytest.mark.parametrize("t", [0.5, 1.0, 1.7])
def test_temperature_distribution(t):
    assert_matches(draw([make("temperature", temperature=t)], LOGITS), ref_temperature(LOGITS, t))


@pytest.mark.parametrize("k", [1, 3, 7])
def test_top_k_distribution(k):
    assert_matches(draw([make("top_k", k=k)], LOGITS), ref_top_k(LOGITS, k))


@pytest.mark.parametrize("p", [0.3, 0.6, 0.9, 0.97])
def test_top_p_distribution(p):
    assert_matches(draw([make("top_p", p=p)], LOGITS), ref_top_p(LOGITS, p))


@pytest.mark.parametrize("m", [0.05, 0.2, 0.5])
def test_min_p_distribution(m):
    assert_matches(draw([make("min_p", min_p=m)], LOGITS), ref_min_p(LOGITS, m))


def test_repetition_penalty_distribution():
    seen_ids = [0, 3, 7, 11]
    seen = np.zeros(len(LOGITS), bool)
    seen[seen_ids] = True
    counts = draw([make("repetition_penalty", penalty=1.8)], LOGITS, seen=seen)
    assert_matches(counts, ref_repetition(LOGITS, seen_ids, 1.8))


def test_chain_distribution_in_hf_order():
    """temperature → top-k → top-p → min-p, composed from the references in that order."""
    chain = [
        make("min_p", min_p=0.1),
        make("top_p", p=0.9),
        make("temperature", temperature=0.7),
        make("top_k", k=6),
    ]
    logits = LOGITS / 0.7
    probs = softmax(logits)
    probs = ref_top_k(np.log(probs), 6)
    with np.errstate(divide="ignore"):
        probs = ref_top_p(np.log(probs), 0.9)
        probs = ref_min_p(np.log(probs), 0.1)
    assert_matches(draw(chain, LOGITS), probs)


def test_greedy_and_temperature_zero_are_argmax():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(64, 50)).astype(np.float32)
    keys = jax.random.split(jax.random.key(1), 64)
    want = logits.argmax(-1)
    for chain in ([make("greedy")], [make("temperature", temperature=0.0)]):
        chain = sample.canonical_chain(chain)
        assert sample.is_deterministic(chain)
        got = np.asarray(sample.select_tokens(chain, jnp.asarray(logits), None, keys))
        np.testing.assert_array_equal(got, want)
    counts = draw([make("temperature", temperature=0.0), make("top_p", p=0.9)], LOGITS, n=500)
    assert counts[LOGITS.argmax()] == 500


# ---- exact sets, hand-computed ------------------------------------------------------------------


def kept(sampler, probs, seen=None):
    logits = jnp.log(jnp.asarray([probs], jnp.float32))
    out = np.asarray(sampler(logits, seen))[0]
    return set(np.flatnonzero(np.isfinite(out)).tolist())


def test_top_p_keeps_smallest_set_reaching_p():
    probs = [0.05, 0.5, 0.15, 0.3]  # sorted: 1 (0.5), 3 (0.3), 2 (0.15), 0 (0.05)
    assert kept(make("top_p", p=0.4), probs) == {1}
    assert kept(make("top_p", p=0.75), probs) == {1, 3}
    assert kept(make("top_p", p=0.85), probs) == {1, 3, 2}
    assert kept(make("top_p", p=0.99), probs) == {0, 1, 2, 3}
    assert kept(make("top_p", p=1e-6), probs) == {1}  # the top token always survives


def test_min_p_cutoff_is_relative_to_top_probability():
    # top 0.6 → cut-off 0.2·0.6 = 0.12: keeps 0.6 and 0.25 only
    assert kept(make("min_p", min_p=0.2), [0.6, 0.25, 0.1, 0.05]) == {0, 1}
    # flat distribution: top 0.3 → cut-off 0.06 keeps all (an absolute 0.2 cut would drop two)
    assert kept(make("min_p", min_p=0.2), [0.3, 0.28, 0.22, 0.2]) == {0, 1, 2, 3}
    # min_p = 1 keeps only the top (and its ties)
    assert kept(make("min_p", min_p=1.0), [0.4, 0.2, 0.4]) == {0, 2}


def test_top_k_keeps_ties_and_k():
    assert kept(make("top_k", k=2), [0.4, 0.1, 0.3, 0.2]) == {0, 2}
    assert kept(make("top_k", k=2), [0.3, 0.1, 0.3, 0.3]) == {0, 2, 3}


def test_repetition_penalty_signs():
    logits = jnp.asarray([[2.0, -2.0, 1.0, -1.0]])
    seen = jnp.asarray([[True, True, False, False]])
    out = np.asarray(make("repetition_penalty", penalty=2.0)(logits, seen))
    np.testing.assert_allclose(out, [[1.0, -4.0, 1.0, -1.0]])


# ---- Hugging Face's logits processors as an independent implementation ------------------------


@pytest.fixture(scope="module")
def hf():
    torch = pytest.importorskip("torch")
    lp = pytest.importorskip("transformers.generation.logits_process")
    return torch, lp


def test_matches_hf_processors(hf):
    torch, lp = hf
    rng = np.random.default_rng(3)
    logits = (rng.normal(size=(16, 300)) * 2.5).astype(np.float32)
    input_ids = rng.integers(0, 300, size=(16, 20))
    seen = np.zeros_like(logits, bool)
    np.put_along_axis(seen, input_ids, True, axis=1)
    cases = [
        (make("temperature", temperature=0.6), lp.TemperatureLogitsWarper(0.6)),
        (make("top_k", k=17), lp.TopKLogitsWarper(17)),
        (make("top_p", p=0.8), lp.TopPLogitsWarper(0.8)),
        (make("min_p", min_p=0.1), lp.MinPLogitsWarper(0.1)),
        (make("repetition_penalty", penalty=1.3), lp.RepetitionPenaltyLogitsProcessor(1.3)),
    ]
    ids_t = torch.from_numpy(input_ids)
    for ours, theirs in cases:
        got = np.asarray(ours(jnp.asarray(logits), jnp.asarray(seen)))
        want = theirs(ids_t, torch.from_numpy(logits.copy())).numpy()
        np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want), err_msg=repr(ours))
        finite = np.isfinite(want)
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-6, err_msg=repr(ours))
    # the whole chain, in HF's order (penalty first, then the warpers)
    chain = sample.canonical_chain([c[0] for c in reversed(cases)])
    got = np.asarray(sample.apply_chain(chain, jnp.asarray(logits), jnp.asarray(seen)))
    want = torch.from_numpy(logits.copy())
    for proc in [cases[4][1], cases[0][1], cases[1][1], cases[2][1], cases[3][1]]:
        want = proc(ids_t, want)
    want = want.numpy()
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
    np.testing.assert_allclose(got[np.isfinite(want)], want[np.isfinite(want)], rtol=1e-5)


# ---- chains, seeds, validation ------------------------------------------------------------------


def test_chain_is_sorted_into_canonical_order_and_rejects_duplicates():
    chain = sample.canonical_chain(
        [make("top_p", p=0.9), make("repetition_penalty"), make("temperature", temperature=0.5)]
    )
    assert [type(s).__name__ for s in chain] == ["RepetitionPenalty", "Temperature", "TopP"]
    assert sample.canonical_chain(make("greedy")) == (make("greedy"),)
    assert sample.canonical_chain(None) == ()
    with pytest.raises(ConfigError, match="same stage"):
        sample.canonical_chain([make("top_p", p=0.9), make("top_p", p=0.5)])
    with pytest.raises(ConfigError, match="not a sampler"):
        sample.canonical_chain(["top_p"])


def test_same_seed_same_draws_other_seed_other_draws():
    chain = [make("temperature", temperature=1.0)]
    a = draw(chain, LOGITS, n=2000, seed=5)
    b = draw(chain, LOGITS, n=2000, seed=5)
    c = draw(chain, LOGITS, n=2000, seed=6)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize(
    "name,kw",
    [
        ("temperature", {"temperature": -1.0}),
        ("top_k", {"k": 0}),
        ("top_p", {"p": 0.0}),
        ("top_p", {"p": 1.5}),
        ("min_p", {"min_p": 2.0}),
        ("repetition_penalty", {"penalty": 0.0}),
    ],
)
def test_bad_parameters_are_config_errors(name, kw):
    with pytest.raises(ConfigError, match=name):
        make(name, **kw)


def test_first_argmax_matches_numpy_with_ties_infinities_and_nan():
    rng = np.random.default_rng(3)
    logits = rng.integers(0, 4, (6, 50)).astype(np.float32)  # many ties: the first one wins
    logits[1] = -np.inf  # a fully masked row
    logits[2, [7, 30]] = np.nan  # NaN counts as the maximum (first NaN), as in numpy
    logits[3, 11] = np.inf
    out = np.asarray(sample.first_argmax(jnp.asarray(logits)))
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, np.argmax(logits, axis=-1))
