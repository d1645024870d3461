"""Detection of edited copies of real English pages follows P = 1 - (1 - s^8)^14."""

from __future__ import annotations

import math
import random

import numpy as np

from framework.data.signatures import SignatureComputer, jaccard, lsh_probability


def _edit(text: str, fraction: float, rng: random.Random) -> str:
    words = text.split()
    for i in rng.sample(range(len(words)), max(1, round(len(words) * fraction))):
        words[i] = f"qz{rng.randrange(10**9)}"
    return " ".join(words)


def test_detection_follows_lsh_curve_and_unrelated_pages_never_collide(english_pages):
    rng = random.Random(1234)
    computer = SignatureComputer()
    originals = [text for _, text in english_pages]
    orig_shingles = computer.shingles_many(originals)
    orig_bands = [s.reshape(14, 8) for s in computer.compute(originals)]

    # unrelated pages: no shared band between any two different originals
    keys = {}
    for page, bands in enumerate(orig_bands):
        for b in range(14):
            other = keys.setdefault((b, bands[b].tobytes()), page)
            assert other == page, f"pages {other} and {page} share band {b}"

    by_fraction: dict[float, tuple[int, float, float]] = {}
    total_obs, total_exp, total_var = 0, 0.0, 0.0
    for fraction in (0.01, 0.03, 0.05, 0.10):
        copies, sources = [], []
        for page, text in enumerate(originals):
            for _ in range(4):
                copies.append(_edit(text, fraction, rng))
                sources.append(page)
        shingles = computer.shingles_many(copies)
        sigs = computer.compute(copies)
        obs, exp, var = 0, 0.0, 0.0
        for page, sh, sig in zip(sources, shingles, sigs, strict=True):
            s = jaccard(orig_shingles[page], sh)  # exact similarity of the shingle sets
            p = float(lsh_probability(s))
            obs += bool((sig.reshape(14, 8) == orig_bands[page]).all(axis=1).any())
            exp += p
            var += p * (1 - p)
        by_fraction[fraction] = (obs, exp, var)
        # each fraction on its own, within 4 standard deviations (plus one for tiny variances)
        assert abs(obs - exp) <= 4 * math.sqrt(var) + 1, (fraction, obs, exp, var)
        total_obs, total_exp, total_var = total_obs + obs, total_exp + exp, total_var + var
    assert abs(total_obs - total_exp) <= 3 * math.sqrt(total_var) + 1, by_fraction
    # the curve is exercised: near-certain at 1 %, in between at 3-5 %, rare at 10 %
    n = 4 * len(originals)
    assert by_fraction[0.01][0] >= 0.95 * n
    assert 0.05 * n < by_fraction[0.05][0] + by_fraction[0.03][0] < 1.95 * n
    assert by_fraction[0.10][0] <= 0.2 * n


def test_lsh_probability_reference_values():
    # values quoted in datatrove's minhash module: threshold ≈ (1/14)^(1/8), P(0.8) = 0.924
    assert abs(float(lsh_probability(0.8)) - 0.924) < 1e-3
    t = (1 / 14) ** (1 / 8)
    assert 0.45 < float(lsh_probability(t)) < 0.65
    assert np.all(np.diff(lsh_probability(np.linspace(0, 1, 11))) >= 0)
