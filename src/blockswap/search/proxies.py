"""Zero-cost proxies that rank untrained candidate students, Fisher potential first (BlockSwap §3.3).

Each proxy is `fn(net, batches, genotype) -> float` on a freshly initialised network in train mode,
registered with the sign that makes "higher = better": `sign * value` is what ranking sorts on.

"After k minibatches" (BlockSwap Table 1, §4.2: "after 1, 10, and 100 minibatches of training"): every
metric is measured on a network being trained. From its
random initialisation it takes k SGD steps, one per minibatch (`train_k_steps`: lr 0.1, momentum 0.9,
weight decay 5e-4). The *trajectory* metrics are taken during those steps, each before its step: Fisher
accumulates Δ over the k passes, grad_norm sums the weight-gradient norms over the k steps, training
accuracy and loss are those of the k minibatches as they are trained on. Every other metric (ℓ2 norm,
SNIP, SynFlow, NASWOT) is a function of the weights and is measured after the k steps (SNIP and NASWOT
on the first minibatch). k = 1 Fisher - the search itself - is one forward/backward at initialisation,
computed from activation gradients only (`fisher_per_block`).

Reproducibility: every candidate is initialised from `candidate_seed(seed, genotype.id)` — from its
content, not its position — so a rerun, a reordered file or a different worker count gives the same
initialisation (float results can still differ in the last bits between thread counts).
"""

from __future__ import annotations

import copy
import hashlib
import math
import multiprocessing
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..core.counting import analytic
from ..core.errors import BlockswapError
from ..core.genotype import Genotype
from ..core.registry import Registry
from ..core.scores import PROXY_ALIASES, PROXY_SIGNS
from ..nn.blocks import InnerReLU
from ..nn.models import create_model
from . import zerocost
from .fisher import fisher_per_block, train_k_steps

Batch = tuple[torch.Tensor, torch.Tensor]
ProxyFn = Callable[[nn.Module, list[Batch], Genotype], float]


@dataclass(frozen=True)
class Proxy:
    name: str
    fn: ProxyFn
    sign: int  # +1: higher raw value is better; -1: lower is better
    description: str
    trajectory: bool = False  # taken during the k steps (else: a function of the weights after them)
    analytic: bool = False  # a function of the genotype alone: needs neither a network nor the k steps

    def __call__(self, net: nn.Module, batches: list[Batch], genotype: Genotype) -> float:
        return float(self.fn(net, batches, genotype))


PROXIES: Registry[Proxy] = Registry("proxy")


def register_proxy(name: str, sign: int, description: str, trajectory: bool = False, analytic: bool = False):
    """Decorator: register `fn(net, batches, genotype) -> float` as proxy `name`; `trajectory`: one of
    the quantities `train_k_steps` measures (the function then returns that measurement)."""
    if PROXY_SIGNS.get(name) != sign:
        raise ValueError(f"proxy {name!r} with sign {sign!r}: list it with that sign in scores.PROXY_SIGNS")

    def wrap(fn: ProxyFn) -> ProxyFn:
        PROXIES.add(name, Proxy(name, fn, sign, description, trajectory, analytic))
        return fn
    return wrap


def proxy_names() -> list[str]:
    return PROXIES.names()


def get_proxy(name: str) -> Proxy:
    return PROXIES.get(PROXY_ALIASES.get(name, name))


def parse_proxies(text: str) -> list[Proxy]:
    """'fisher,grad_norm' → proxies, in order; duplicates and empty names are errors."""
    names = [PROXY_ALIASES.get(n.strip(), n.strip()) for n in text.split(",")]
    if not all(names):
        raise BlockswapError(f"empty proxy name in {text!r}; valid: {', '.join(PROXIES)}")
    if len(set(names)) != len(names):
        raise BlockswapError(f"proxy named twice in {text!r}")
    return [get_proxy(n) for n in names]


@register_proxy("fisher", +1, "Fisher potential: Σ over blocks of Δ at the residual-branch output "
                              "(BlockSwap Eq. 2-3), summed over the k passes of k SGD steps", trajectory=True)
def fisher_potential(net, batches, genotype=None) -> float:
    if len(batches) == 1:  # the search: one pass at initialisation, activation gradients suffice
        return float(fisher_per_block(net, batches).sum())
    return train_k_steps(net, batches)["fisher"]


# ------------------------------------------------------------------------------ other zero-cost proxies
@register_proxy("grad_norm", +1, "Σ over the k steps of Σ over conv/linear weights of ‖∂L/∂W‖₂",
                trajectory=True)
def grad_norm(net, batches, genotype=None) -> float:
    return train_k_steps(net, batches)["grad_norm"]


@register_proxy("snip", +1, "SNIP saliency Σ|W ⊙ ∂L/∂W| over conv/linear weights, after the k steps "
                            "(first minibatch)")
def snip(net, batches, genotype=None) -> float:
    grads = zerocost.weight_grads(net, batches[0])
    return float(sum((w.detach() * g).double().abs().sum() for w, g in zip(zerocost.weights(net), grads)))


@register_proxy("l2_norm", +1, "Σ over conv/linear weights of ‖W‖₂ after the k steps")
def l2_norm(net, batches=None, genotype=None) -> float:
    return float(sum(w.detach().double().norm() for w in zerocost.weights(net)))


@register_proxy("synflow", +1, "SynFlow Σ|W ⊙ ∂R/∂W|, R = Σ logits of an all-ones input through |θ|, in "
                               "float64; BN in eval mode with reset stats (≈ identity)")
def synflow(net, batches, genotype) -> float:
    # The network is this proxy's own copy, so its weights are overwritten with |θ| in place.
    # BN in eval mode with running mean 0 / var 1 and γ=1, β=0 scales by 1/√(1+ε): BN "removed"
    # (in train mode a one-image all-ones batch would be normalised to zero).
    net = net.double().eval()
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    device = next(net.parameters()).device
    x = torch.ones(1, genotype.in_channels, genotype.image_size, genotype.image_size,
                   dtype=torch.float64, device=device)
    weights = zerocost.weights(net)
    with torch.enable_grad():
        grads = torch.autograd.grad(net(x)[0].sum(), weights)
    return float(sum((w.detach() * g).abs().sum() for w, g in zip(weights, grads)))


@register_proxy("naswot", +1, "NASWOT: log|K| of the binary ReLU-pattern kernel K_ij = N_A − Hamming(c_i, c_j) "
                              "over the first minibatch (−inf if two codes coincide)")
def naswot(net, batches, genotype=None) -> float:
    x, _ = batches[0]
    n = len(x)
    kernel = torch.zeros(n, n, dtype=torch.float64, device=x.device)

    def add(module, inputs, output):
        # K_H = c·cᵀ + (1−c)(1−c)ᵀ = D − |c_i| − |c_j| + 2 c_i·c_j; per-layer counts are exact in float32.
        c = (output > 0).flatten(1).float()
        s = c.sum(1, keepdim=True)
        kernel.add_((2 * c @ c.T - s - s.T + c.shape[1]).double())

    handles = [m.register_forward_hook(add) for m in net.modules() if isinstance(m, (nn.ReLU, InnerReLU))]  # every ReLU
    try:
        net.train()
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    return float(torch.linalg.slogdet(kernel).logabsdet)


@register_proxy("params", +1, "parameter count (analytic; needs no network)", analytic=True)
def params(net, batches, genotype) -> float:
    return float(analytic(genotype).params)


@register_proxy("flops", +1, "multiply-accumulates of one image's forward pass (analytic; needs no network)",
                analytic=True)
def flops(net, batches, genotype) -> float:
    return float(analytic(genotype).macs)


# The field's other zero-cost proxies: formulas in `zerocost`, each on the first minibatch after the k steps.
for _name, _fn, _sign, _description in (
        ("plain", zerocost.plain, +1, "Σ W ⊙ ∂L/∂W (Abdelfattah et al. 2021)"),
        ("grasp", zerocost.grasp, +1, "GraSP Σ −W ⊙ Hg (Wang et al. 2020)"),
        ("jacov", zerocost.jacov, +1, "Jacobian covariance of the input gradients (Mellor et al. 2020, v1)"),
        ("epe_nas", zerocost.epe_nas, +1, "per-class Jacobian correlations (EPE-NAS, Lopes et al. 2021)"),
        ("zen", zerocost.zen, +1, "Zen-score: feature change under input noise + BN scales (Lin et al. 2021)"),
        ("zico", zerocost.zico, +1, "ZiCo: Σ log Σ mean|g|/std(g) over the minibatch's halves (Li et al. 2023)"),
        ("meco", zerocost.meco, +1, "MeCo: Σ of each conv output's smallest correlation eigenvalue (Jiang et "
                                    "al. 2023)")):
    register_proxy(_name, _sign, _description)(lambda net, batches, genotype=None, _fn=_fn: _fn(net, batches[0]))


@register_proxy("train_accuracy", +1, "training accuracy on the k minibatches as they are trained on",
                trajectory=True)
def train_accuracy(net, batches, genotype=None) -> float:
    return train_k_steps(net, batches)["train_accuracy"]


@register_proxy("train_loss", -1, "mean cross-entropy on the k minibatches as they are trained on (lower is "
                                  "better)", trajectory=True)
def train_loss(net, batches, genotype=None) -> float:
    return train_k_steps(net, batches)["train_loss"]


# --------------------------------------------------------------------------------------------- scoring
def candidate_seed(seed: int, genotype_id: str) -> int:
    """The init seed of one candidate: a hash of (search seed, genotype id), 63 bits."""
    digest = hashlib.sha256(f"{seed}:{genotype_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


BatchSource = Batch | Sequence[Batch] | Callable[[int, int], Sequence[Batch]]


def _batches_for(source: BatchSource, index: int, cseed: int, k: int, device) -> list[Batch]:
    """The k minibatches of candidate `index`: a fixed batch, a fixed list, or `source(index, seed)`."""
    if callable(source):
        got = list(source(index, cseed))
    elif isinstance(source[0], torch.Tensor):
        got = [tuple(source)]
    else:
        got = list(source)
    if len(got) < k:
        raise BlockswapError(f"minibatches={k} needs {k} batches, got {len(got)}")
    return [(x.to(device), y.to(device)) for x, y in got[:k]]


class Scores(dict):
    """{proxy name: raw value} of one candidate (NaN where it has none); `missing` {proxy: why it has no
    value}, `seconds` {proxy: seconds it takes alone from the built network, its k steps included}."""

    def __init__(self, values=(), missing=None, seconds=None):
        super().__init__(values)
        self.missing = dict(missing or {})
        self.seconds = dict(seconds or {})


def _finite(value: float) -> tuple[float, str]:
    return (value, "") if math.isfinite(value) else (math.nan, f"not finite ({value})")


def _measure(proxy: Proxy, net: nn.Module, batches: list[Batch], genotype: Genotype) -> tuple[float, str]:
    """(value, "") or (NaN, why): a proxy that fails or is not finite for one net must not stop the job."""
    try:
        return _finite(proxy(net, batches, genotype))
    except (RuntimeError, ValueError, ArithmeticError, IndexError) as e:  # torch's numerical/shape errors
        first = str(e).splitlines()[0] if str(e) else ""
        return math.nan, f"{type(e).__name__}: {first}" if first else type(e).__name__


def score_one(genotype: Genotype, proxies: Sequence[Proxy], batch: BatchSource, seed: int,
              minibatches: int = 1, device="cpu", index: int = 0) -> Scores:
    """The raw value of each proxy for one candidate; every proxy sees the same initialisation."""
    cseed = candidate_seed(seed, genotype.id)
    batches = _batches_for(batch, index, cseed, minibatches, device)
    values, missing, seconds = {}, {}, {}
    # Init runs on the CPU generator (create_model builds, then moves), so CPU and GPU runs agree;
    # fork_rng keeps the caller's global RNG state untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cseed)
        net = create_model(genotype, device)
        search = minibatches == 1 and all(p.name == "fisher" or p.analytic for p in proxies)  # no step needed
        stepped = [p for p in proxies if not p.analytic and not search]
        start, measured = time.perf_counter(), {}
        if stepped:
            measured = train_k_steps(net, batches)  # `net` now holds the weights after the k steps
        steps_took = time.perf_counter() - start
        for p in proxies:
            start = time.perf_counter()
            if p.trajectory and measured:
                value, why = _finite(measured[p.name])
            else:  # weight-state proxies may rescale or cast their network: each gets its own copy
                own = net if search or p.analytic else copy.deepcopy(net)
                value, why = _measure(p, own, batches if search else batches[:1], genotype)
            values[p.name] = value
            seconds[p.name] = time.perf_counter() - start + (steps_took if p in stepped else 0.0)
            if why:
                missing[p.name] = why
    return Scores(values, missing, seconds)


_WORKER: dict = {}


def _worker_init(state: dict, threads: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the pool
    torch.set_num_threads(threads)
    _WORKER.update(state)


def _worker_score(item: tuple[int, Genotype]) -> Scores:
    index, genotype = item
    return score_one(genotype, index=index, **_WORKER)


def score_candidates(genotypes: Sequence[Genotype], proxies: Sequence[Proxy | str], batch: BatchSource,
                     seed: int, minibatches: int = 1, device="cpu", workers: int = 1,
                     progress: bool = False) -> list[Scores]:
    """Score each genotype with each proxy; returns one `Scores` per genotype, in order.

    `batch` is one (x, y) minibatch, a list of ≥ `minibatches` of them (shared by every candidate),
    or a callable `(index, candidate_seed) -> batches` for a new minibatch per candidate.
    `workers` > 1 (CPU only) scores in that many forked processes, each with
    `torch.get_num_threads() // workers` intra-op threads (at least 1).
    """
    from ..training.runner import progress_bar

    proxies = [get_proxy(p) if isinstance(p, str) else p for p in proxies]
    if minibatches < 1:
        raise BlockswapError(f"minibatches must be ≥ 1, got {minibatches}")
    state = dict(proxies=proxies, batch=batch, seed=seed, minibatches=minibatches, device=device)
    bar = progress_bar(progress, total=len(genotypes), desc="score", unit="net")
    items = list(enumerate(genotypes))
    try:
        if workers <= 1 or len(items) <= 1 or torch.device(device).type != "cpu" \
                or "fork" not in multiprocessing.get_all_start_methods():
            results = []
            for i, g in items:
                results.append(score_one(g, index=i, **state))
                bar.update()
            return results
        # fork: the workers inherit the batch (and a batch callable) without pickling it.
        threads = max(1, torch.get_num_threads() // workers)
        ctx = multiprocessing.get_context("fork")
        # Ctrl-C while forking would be swallowed by the fork hooks: hold it until the pool stands.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            pool = ctx.Pool(min(workers, len(items)), _worker_init, (state, threads))
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        with pool:
            results = []
            for r in pool.imap(_worker_score, items):
                results.append(r)
                bar.update()
            return results
    finally:
        bar.close()


def rank(values: Sequence[float], sign: int) -> list[int]:
    """1-based ranks of `sign * value`, highest first; ties keep input order, NaN ranks last."""
    key = [(-math.inf if math.isnan(v) else sign * v) for v in values]
    order = sorted(range(len(values)), key=lambda i: -key[i])
    ranks = [0] * len(values)
    for r, i in enumerate(order, start=1):
        ranks[i] = r
    return ranks
