"""Structured substitutions (Gray et al. 2019, deficient-efficient) as arithmetic: names, factorisations, counts.

A substituted k×k conv N→M becomes a depthwise k×k conv (N·k² params, carrying the conv's stride) followed
by a structured replacement of the dense 1×1 N→M, with no BN or nonlinearity inside - except `Shuffle`,
which replaces the whole k×k conv as the original's `LinearShuffleNet` did: grouped 1×1 N→M/4, channel
shuffle, depthwise k×k on M/4 (carrying the stride), grouped 1×1 M/4→M, and no depthwise conv on the input
(`Substitution.has_depthwise`). This module knows, without torch, each replacement's hyperparameter,
validity, parameters and mult-adds; `structured` builds the modules and `blocktypes` registers them as block
types named `Family_hyper` (`Generic_0.03`, `ACDC_12`). `conv_params` and `conv_macs` count the whole
substituted conv, depthwise included where there is one.

Mult-adds are what the built module computes. `Sep`, `Generic` and `Shuffle` apply their (factor) weights
one after another; Shuffle's first grouped 1×1 runs before the stride, at the input's resolution.
`SepHashed`, `TensorTrain`, `Tucker` and `ACDC` materialise their dense M×N weight once per forward pass
and apply it as a 1×1 conv, so they cost NM per position, like `Sep`; the materialisation itself runs
once per forward pass whatever the batch and image size, and is not counted. The original counted TT,
Tucker and hashed layers the same way (as dense separable layers) but ACDC as 4N' + 5N'·log2 N' per layer
and position: `Substitution.published_macs`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from .errors import BlockswapError

# Families whose hyperparameter is a fraction s in (0, 1], and those whose hyperparameter is a count ≥ 1.
FRACTION_FAMILIES = ("Generic", "SepHashed", "TensorTrain", "Tucker")
COUNT_FAMILIES = ("Shuffle", "ACDC")
FAMILIES = ("Sep",) + FRACTION_FAMILIES + COUNT_FAMILIES
HYPER_NAMES = {"Generic": "s", "SepHashed": "s", "TensorTrain": "s", "Tucker": "s", "Shuffle": "g", "ACDC": "L"}


@functools.cache
def three_factors(p: int) -> tuple[int, int, int]:
    """The near-equal factorisation p = d1·d2·d3 (d1 ≤ d2 ≤ d3) with the smallest d3, then the largest d1.

    TT and Tucker reshape the N×M weight (NM entries) into a d1×d2×d3 tensor of these dims.
    """
    divisors = sorted({d for i in range(1, math.isqrt(p) + 1) if p % i == 0 for d in (i, p // i)})
    best = None
    for d1 in divisors:
        if d1 ** 3 > p:
            break
        for d2 in divisors:
            if d2 < d1 or d1 * d2 * d2 > p or p % (d1 * d2):
                continue
            key = (p // (d1 * d2), -d1)
            if best is None or key < best[0]:
                best = (key, (d1, d2, p // (d1 * d2)))
    return best[1]


def tt_ranks(dims: tuple[int, int, int], s: float) -> tuple[int, int]:
    """TT ranks (r1, r2) (r0 = r3 = 1): max(1, round(s·min(d_i, d_i+1))), capped at what the dims allow."""
    d1, d2, d3 = dims
    r1 = min(max(1, round(s * min(d1, d2))), d1, d2 * d3)
    r2 = min(max(1, round(s * min(d2, d3))), d1 * d2, d3)
    return r1, r2


def tucker_ranks(dims: tuple[int, int, int], s: float) -> tuple[int, int, int]:
    """Tucker ranks r_i = max(1, round(s·d_i)), at most d_i."""
    return tuple(min(max(1, round(s * d)), d) for d in dims)


def shuffle_groups(g: int, n: int, m: int) -> int:
    """Shuffle's group count: g lowered by one until it divides N, M and M/4."""
    while n % g or m % g or (m // 4) % g:
        g -= 1
    return g


@dataclass(frozen=True)
class Substitution:
    """One structured replacement of a dense 1×1 N→M: its family and hyperparameter (None for `Sep`)."""

    family: str
    hyper: float | int | None = None

    def rank(self, n: int, m: int) -> int:
        """Generic's inner width r = int(s·max(N, M))."""
        return int(self.hyper * max(n, m))

    def hashed_values(self, n: int, m: int) -> int:
        """SepHashed's number of shared values, int(s·N·M)."""
        return int(self.hyper * n * m)

    def invalid_reason(self, n: int, m: int) -> str | None:
        """Why the replacement cannot be built for N → M, or None if it can."""
        if self.family == "Generic" and self.rank(n, m) < 1:
            return f"its rank int({self.hyper:g}·{max(n, m)}) is 0"
        if self.family == "SepHashed" and self.hashed_values(n, m) < 1:
            return f"int({self.hyper:g}·{n}·{m}) shares no value"
        if self.family == "Shuffle" and (m % 4 or m < 4):
            return f"{m} output channels are not divisible by 4"
        return None

    @property
    def has_depthwise(self) -> bool:
        """Whether a depthwise k×k on the input comes before the replacement: every family but `Shuffle`,
        whose module is the whole substituted conv (its only spatial conv is on the M/4 bottleneck)."""
        return self.family != "Shuffle"

    def conv_params(self, n: int, m: int, k: int) -> int:
        """Parameters of the whole substituted k×k conv N→M: the depthwise k×k (if any) and the replacement."""
        return (n * k * k if self.has_depthwise else 0) + self.params(n, m, k)

    def conv_macs(self, n: int, m: int, k: int, positions_in: int, positions_out: int) -> int:
        """Mult-adds of the whole substituted conv, given the spatial positions before and after its stride."""
        if self.family == "Shuffle":
            g, q = shuffle_groups(self.hyper, n, m), m // 4
            return n * q // g * positions_in + (q * k * k + q * m // g) * positions_out
        return (n * k * k + self.macs(n, m, k)) * positions_out

    def params(self, n: int, m: int, k: int) -> int:
        """Parameters of the replacement: of the 1×1 (the depthwise k×k before it not included), or for
        `Shuffle` of its whole module."""
        f = self.family
        if f == "Sep":
            return n * m
        if f == "Generic":
            r = self.rank(n, m)
            return n * r + r * m
        if f == "Shuffle":
            g, q = shuffle_groups(self.hyper, n, m), m // 4
            return n * q // g + q * k * k + q * m // g
        if f == "SepHashed":
            return self.hashed_values(n, m)
        dims = three_factors(n * m)
        if f == "TensorTrain":
            r1, r2 = tt_ranks(dims, self.hyper)
            return dims[0] * r1 + r1 * dims[1] * r2 + r2 * dims[2]
        if f == "Tucker":
            ranks = tucker_ranks(dims, self.hyper)
            return math.prod(ranks) + sum(d * r for d, r in zip(dims, ranks))
        if f == "ACDC":
            return 2 * max(n, m) * self.hyper
        raise ValueError(f"unknown substitution family {f!r}")

    def macs(self, n: int, m: int, k: int) -> int:
        """Mult-adds per output position of the 1×1 replacement as built (see the module docstring); for
        `Shuffle`, of its whole module at stride 1 (`conv_macs` counts a strided one)."""
        if self.family in ("Sep", "Generic", "Shuffle"):  # each weight applied once per position
            return self.params(n, m, k)
        return n * m  # the materialised dense weight

    def published_macs(self, n: int, m: int, k: int) -> float:
        """Per output position as the original counted: ACDC 4N' + 5N'·log2 N' per layer, the rest as `macs`."""
        if self.family == "ACDC":
            width = max(n, m)
            return self.hyper * (4 * width + 5 * width * math.log2(width))
        return self.macs(n, m, k)


def parse(name: str, family: str, text: str) -> Substitution:
    """The substitution named `name` = `family`_`text`; a bad hyperparameter is a one-line BlockswapError."""
    hyper = HYPER_NAMES[family]
    if family in COUNT_FAMILIES:
        if not text.isdigit() or int(text) < 1:
            raise BlockswapError(f"block type {name!r}: {hyper} must be a whole number ≥ 1, got {text!r}")
        return Substitution(family, int(text))
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 1:
        raise BlockswapError(f"block type {name!r}: {hyper} must be a number in (0, 1], got {text!r}")
    return Substitution(family, value)
