"""Structured substitutions as nn.Modules (Gray et al. 2019): depthwise k×k → a structured replacement of the 1×1,
or, for `Shuffle`, one module for the whole k×k conv.

The arithmetic (hyperparameters, factorisations, counts) lives in `substitutions`; this module builds it.
Each replacement of the dense 1×1 N→M is written directly in torch:
- `Sep`: the dense 1×1 itself (an nn.Conv2d, initialised with the network's convs);
- `Generic` (RF): 1×1 N→r then r→M, nothing between;
- `Shuffle`: grouped 1×1 N→M/4 → channel shuffle → depthwise k×k on M/4 (with the conv's stride) → grouped
  1×1 M/4→M, plain nn.Conv2ds initialised with the network's convs, as the original's `LinearShuffleNet`:
  it replaces the whole k×k conv, so no depthwise conv on the input comes before it;
- `SepHashed`, `TensorTrain`, `Tucker`, `ACDC`: materialise their dense M×N weight once per forward pass
  (`dense_weight`) and apply it as a 1×1 conv.
Every weight a replacement applies itself goes through a `Pointwise`, whose forward hook is how `measure`
counts its mult-adds.

Initialisation: the represented M×N weight has mean square 2/M, the variance the network's init gives the
dense 1×1 it replaces (He, fan-out: N(0, sqrt(2/(k²·out))) with k = 1, the WRN code's conv init). ACDC's
diagonals start at N(1, 0.01²) as the paper's; its near-permutation product has mean square 1/N', so a fixed gain
sqrt(2N'/M) (not a parameter) scales its output to the same 2/M.

CRS-wd (Gray et al. 2019) needs each replacement's compressed tensors: `compressed_parameters()` declares them
(the factors, cores, shared values, diagonals, or all three convs of Shuffle's module, which together
factor the k×k conv - not the depthwise conv on the input of the other families, not Sep's dense 1×1), and
the module-level `compressed_parameters(model)` collects them from a network. These are the tensors the
original's name-based selection chose (it also chose its hashed 1×1's bias, which SepHashed has not here).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..core.substitutions import Substitution, shuffle_groups, three_factors, tt_ranks, tucker_ranks

ACDC_INIT_STD = 0.01


class Pointwise(nn.Module):
    """Applies an M×N weight given at call time as a 1×1 conv (no parameters of its own)."""

    def forward(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, weight[:, :, None, None])


class StructuredLinear(nn.Module):
    """A structured N→M 1×1 that represents a dense M×N weight (`dense_weight`) and applies it."""

    def __init__(self, n: int, m: int):
        super().__init__()
        self.in_channels, self.out_channels = n, m
        self.apply_weight = Pointwise()

    def dense_weight(self) -> torch.Tensor:
        raise NotImplementedError

    def compressed_parameters(self) -> list[nn.Parameter]:
        """The tensors CRS-wd decays by the compression ratio: by default all of this module's own."""
        return list(self.parameters())

    def forward(self, x):
        return self.apply_weight(x, self.dense_weight())

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}"


def _normal(*shape: int, std: float, mean: float = 0.0) -> nn.Parameter:
    return nn.Parameter(torch.randn(*shape) * std + mean)


class Generic(StructuredLinear):
    """Low rank (RF): A (r×N) then B (M×r), applied one after the other; B·A has variance 2/M."""

    def __init__(self, n: int, m: int, r: int):
        super().__init__(n, m)
        std = (2 / (m * r)) ** 0.25  # r·std⁴ = 2/M
        self.first, self.second = _normal(r, n, std=std), _normal(m, r, std=std)

    def dense_weight(self):
        return self.second @ self.first

    def forward(self, x):
        return self.apply_weight(self.apply_weight(x, self.first), self.second)


class SepHashed(StructuredLinear):
    """Each weight reads one of K shared values through a fixed random index map, times a fixed random sign.

    The index map is a random permutation of the N·M positions folded onto the K values, so every value
    is used ⌊NM/K⌋ or ⌈NM/K⌉ times. Both maps are buffers saved with the weights.
    """

    def __init__(self, n: int, m: int, values: int):
        super().__init__(n, m)
        self.values = _normal(values, std=(2 / m) ** 0.5)
        self.register_buffer("index", (torch.randperm(n * m) % values).view(m, n))
        self.register_buffer("sign", torch.randint(0, 2, (m, n)).float() * 2 - 1)

    def dense_weight(self):
        return self.values[self.index] * self.sign


class TensorTrain(StructuredLinear):
    """The M×N weight, row-major, as a d1×d2×d3 tensor (`three_factors(NM)`) in TT form G1·G2·G3,
    cores r_{i-1}×d_i×r_i (r0 = r3 = 1).

    Initialised as the original does (Gray et al. 2019, through tntorch): the TT-SVD of a dense weight drawn
    as the replaced 1×1's (variance 2/M), truncated to the ranks - G1 and G2 left-orthonormal, G3 carrying
    the scale. (Three independent Gaussian cores of the right product variance instead give weights whose
    scale varies 0.66-1.4× from layer to layer, and the default's TT student trained to 18.6% error on one
    CPU and 31.1% on another.)
    """

    def __init__(self, n: int, m: int, s: float):
        super().__init__(n, m)
        self.dims = three_factors(n * m)
        dense = torch.randn(self.dims) * (2 / m) ** 0.5
        self.cores = nn.ParameterList(map(nn.Parameter, tt_svd(dense, tt_ranks(self.dims, s))))

    def dense_weight(self):
        g1, g2, g3 = self.cores[0], self.cores[1], self.cores[2]  # indexed: torch.jit.script cannot unpack
        return torch.einsum("aib,bjc,ckd->ijk", g1, g2, g3).reshape(self.out_channels, self.in_channels)


def tt_svd(tensor: torch.Tensor, ranks: tuple[int, int]) -> list[torch.Tensor]:
    """Cores (1×d1×r1, r1×d2×r2, r2×d3×1) of the rank-(r1, r2) TT-SVD of a d1×d2×d3 tensor (Oseledets 2011,
    Alg. 1): successive truncated SVDs of its unfoldings, each U kept as a core, S·Vᵀ carried on. A rank above
    what an unfolding has gets zero columns."""
    (d1, d2, d3), (r1, r2) = tensor.shape, ranks

    def truncated(matrix: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor]:
        u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
        k = min(r, len(s))
        u_r, rest = matrix.new_zeros(len(matrix), r), matrix.new_zeros(r, matrix.shape[1])
        u_r[:, :k], rest[:k] = u[:, :k], s[:k, None] * vh[:k]
        return u_r, rest

    g1, rest = truncated(tensor.reshape(d1, d2 * d3), r1)
    g2, g3 = truncated(rest.reshape(r1 * d2, d3), r2)
    return [g1.reshape(1, d1, r1), g2.reshape(r1, d2, r2), g3.reshape(r2, d3, 1)]


class Tucker(StructuredLinear):
    """The M×N weight, row-major, as a d1×d2×d3 tensor: core r1×r2×r3 times a d_i×r_i factor per mode."""

    def __init__(self, n: int, m: int, s: float):
        super().__init__(n, m)
        self.dims = three_factors(n * m)
        ranks = tucker_ranks(self.dims, s)
        self.core = _normal(*ranks, std=(2 / m) ** 0.5)
        # Factor entries of variance 1/r_i keep the core's variance: r1·r2·r3 · (2/M) · Π 1/r_i = 2/M.
        self.factors = nn.ParameterList(_normal(d, r, std=r ** -0.5) for d, r in zip(self.dims, ranks))

    def dense_weight(self):
        u1, u2, u3 = self.factors[0], self.factors[1], self.factors[2]  # (as TensorTrain's)
        return torch.einsum("abc,ia,jb,kc->ijk", self.core, u1, u2, u3).reshape(self.out_channels, self.in_channels)


def dct_matrix(n: int) -> torch.Tensor:
    """The orthonormal DCT-II matrix C (C·x is the DCT of x; its inverse, the IDCT, is Cᵀ)."""
    k, i = torch.arange(n, dtype=torch.float64)[:, None], torch.arange(n, dtype=torch.float64)[None, :]
    c = torch.cos(math.pi * (i + 0.5) * k / n) * math.sqrt(2 / n)
    c[0] /= math.sqrt(2)
    return c.float()


def riffle(n: int) -> torch.Tensor:
    """The perfect riffle shuffle of n channels: x[riffle(n)] interleaves the first ⌈n/2⌉ with the rest."""
    half = (n + 1) // 2
    return torch.argsort(torch.cat([torch.arange(half) * 2, torch.arange(n - half) * 2 + 1]))


class ACDC(StructuredLinear):
    """L layers, each x → A·x → DCT → D·x → IDCT (diagonal A, D), a riffle shuffle between layers, on
    N' = max(N, M) channels: the input is zero-padded from N to N' channels and the output truncated to M.

    The DCT is a fixed orthonormal matrix (a buffer that is not saved). The dense weight is the chain
    applied to the first N columns of the N'×N' identity, keeping its first M rows, times the fixed gain.
    """

    def __init__(self, n: int, m: int, layers: int):
        super().__init__(n, m)
        width = max(n, m)
        self.a = _normal(layers, width, std=ACDC_INIT_STD, mean=1.0)
        self.d = _normal(layers, width, std=ACDC_INIT_STD, mean=1.0)
        self.register_buffer("dct", dct_matrix(width), persistent=False)
        self.register_buffer("shuffle", riffle(width), persistent=False)
        self.gain = math.sqrt(2 * width / m)

    def dense_weight(self):
        x = torch.eye(self.dct.shape[0], self.in_channels, device=self.a.device, dtype=self.a.dtype)
        for layer, (a, d) in enumerate(zip(self.a, self.d)):
            if layer:
                x = x[self.shuffle]
            x = self.dct.T @ (d[:, None] * (self.dct @ (a[:, None] * x)))
        return self.gain * x[: self.out_channels]


class ChannelShuffle(nn.Module):
    """ShuffleNet's shuffle: (g groups × C/g channels) → (C/g × g)."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x):
        b, c, h, w = x.shape
        return x.view(b, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class Shuffle(nn.Module):
    """The whole k×k conv N→M as a linear ShuffleNet unit: grouped 1×1 N→M/4 → channel shuffle → depthwise
    k×k on M/4 (the stride here) → grouped 1×1 M/4→M; no BN, no ReLU, no shortcut."""

    def __init__(self, n: int, m: int, groups: int, kernel: int, stride: int = 1):
        super().__init__()
        g, q = shuffle_groups(groups, n, m), m // 4
        self.reduce = nn.Conv2d(n, q, 1, groups=g, bias=False)
        self.shuffle = ChannelShuffle(g)
        self.spatial = nn.Conv2d(q, q, kernel, stride, kernel // 2, groups=q, bias=False)
        self.expand = nn.Conv2d(q, m, 1, groups=g, bias=False)

    def compressed_parameters(self) -> list[nn.Parameter]:
        return [self.reduce.weight, self.spatial.weight, self.expand.weight]

    def forward(self, x):
        return self.expand(self.spatial(self.shuffle(self.reduce(x))))


def build_replacement(sub: Substitution, n: int, m: int, kernel: int, stride: int = 1) -> nn.Module:
    """The structured replacement of the dense 1×1 N→M (for `Shuffle`, of the whole k×k conv, with its stride)."""
    if sub.family == "Sep":
        return nn.Conv2d(n, m, 1, bias=False)
    if sub.family == "Generic":
        return Generic(n, m, sub.rank(n, m))
    if sub.family == "Shuffle":
        return Shuffle(n, m, sub.hyper, kernel, stride)
    if sub.family == "SepHashed":
        return SepHashed(n, m, sub.hashed_values(n, m))
    return {"TensorTrain": TensorTrain, "Tucker": Tucker, "ACDC": ACDC}[sub.family](n, m, sub.hyper)


def build_substitution(sub: Substitution, cin: int, cout: int, stride: int, kernel: int = 3) -> nn.Module:
    """A substituted k×k conv: depthwise k×k (with the stride), then the replacement of the 1×1; for
    `Shuffle`, its module alone, which carries the stride itself."""
    if not sub.has_depthwise:
        return build_replacement(sub, cin, cout, kernel, stride)
    depthwise = nn.Conv2d(cin, cin, kernel, stride, kernel // 2, groups=cin, bias=False)
    return nn.Sequential(depthwise, build_replacement(sub, cin, cout, kernel))


def compressed_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every tensor a structured replacement in `model` declares compressed, in the model's order."""
    declared = {id(p) for m in model.modules() if hasattr(m, "compressed_parameters")
                for p in m.compressed_parameters()}
    return [p for p in model.parameters() if id(p) in declared]
