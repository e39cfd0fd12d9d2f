"""The field's zero-cost proxies beyond Table 1's (NAS-Bench-Suite-Zero's list, ZiCo, MeCo), as formulas.

Each is `fn(net, batch) -> float` on the network's current weights (taken after the k steps of the "after
k minibatches" protocol) and one (x, y) minibatch; `blockswap.search.proxies` registers them with their signs.
Every reduction runs in float64; no function keeps hooks or gradients on the network it is given.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

Batch = tuple[torch.Tensor, torch.Tensor]
EIGEN_EPS = 1e-5  # the k of the Jacobian-covariance scores (Mellor et al. 2020; Lopes et al. 2021)


def weights(net: nn.Module) -> list[torch.Tensor]:
    """Conv and linear weights: what the gradient/saliency proxies sum over (BN γ/β excluded)."""
    return [m.weight for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def weight_grads(net: nn.Module, batch: Batch, create_graph: bool = False) -> list[torch.Tensor]:
    """∂L/∂W of the batch-mean cross-entropy for every conv/linear weight, in train mode."""
    net.train()
    x, y = batch
    with torch.enable_grad():
        return list(torch.autograd.grad(F.cross_entropy(net(x)[0], y), weights(net), create_graph=create_graph))


@contextlib.contextmanager
def hooked(modules, fn):
    """`fn` as a forward hook on each module for the duration of the block."""
    handles = [m.register_forward_hook(fn) for m in modules]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def plain(net: nn.Module, batch: Batch) -> float:
    """Σ W ⊙ ∂L/∂W over conv/linear weights, signed (Abdelfattah et al. 2021, "plain")."""
    return float(sum((w.detach() * g).double().sum() for w, g in zip(weights(net), weight_grads(net, batch))))


def grasp(net: nn.Module, batch: Batch) -> float:
    """GraSP: Σ −W ⊙ Hg over conv/linear weights, H the Hessian of L and g = ∂L/∂W at these weights (Wang et
    al. 2020, Eq. 8; the sign NAS-Bench-Suite-Zero ranks with)."""
    ws = weights(net)
    with torch.enable_grad():
        g = weight_grads(net, batch, create_graph=True)
        gtg = sum((gi.detach() * gi).sum() for gi in g)  # gᵀ·stop_grad(g): its gradient is H·g
        hg = torch.autograd.grad(gtg, ws)
    return float(-sum((w.detach() * h).double().sum() for w, h in zip(ws, hg)))


def input_jacobians(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Per image, ∂(Σ logits)/∂x flattened: (N, D) float64 (Mellor et al. 2020, §3)."""
    net.train()
    x = x.detach().clone().requires_grad_()
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(net(x)[0].sum(), x)
    return grad.flatten(1).double()


def jacov(net: nn.Module, batch: Batch) -> float:
    """Jacobian covariance: −Σᵢ [log(λᵢ + k) + 1/(λᵢ + k)], λ the eigenvalues of the correlation matrix of
    the images' input Jacobians, k = 1e-5 (Mellor et al. 2020, "NAS without training", v1 Eq. 2)."""
    lam = torch.linalg.eigvalsh(torch.corrcoef(input_jacobians(net, batch[0])))
    return float(-(torch.log(lam + EIGEN_EPS) + 1 / (lam + EIGEN_EPS)).sum())


def epe_nas(net: nn.Module, batch: Batch) -> float:
    """EPE-NAS (Lopes et al. 2021, Eq. 3-4): per class c, E_c = Σᵢⱼ log(|Σ_c(i, j)| + k) over the
    correlation matrix Σ_c of that class's input Jacobians (k = 1e-5, classes with one image left out);
    the score is Σ_c |E_c| for up to 100 classes, else Σ_c Σ_c' |E_c − E_c'| / C with E_c normalised by
    its matrix size."""
    x, y = batch
    jac = input_jacobians(net, x)
    many = net.fc.out_features > 100
    energies = []
    for c in torch.unique(y):
        rows = jac[y == c]
        if len(rows) < 2:
            continue
        e = torch.log(torch.corrcoef(rows).abs() + EIGEN_EPS).sum()
        energies.append(e / len(rows) if many else e)
    if not energies:
        return math.nan
    e = torch.stack(energies)
    return float((e[:, None] - e[None, :]).abs().sum() / len(e) if many else e.abs().sum())


ZEN_ALPHA = 0.01  # the input perturbation's scale (Lin et al. 2021, Algorithm 1)


def zen(net: nn.Module, batch: Batch) -> float:
    """Zen-score (Lin et al. 2021, Eq. 5-6): log E‖f(x) − f(x + αε)‖₁ per image, f the pre-pooling feature
    map, x and ε standard Gaussian of the batch's shape, α = 0.01, plus Σ over BN layers of log √(mean over
    channels of the BN's batch variance of x). BN in train mode; the Gaussians are seeded, so the score is
    a function of the weights."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    shape = batch[0].shape
    x = torch.randn(shape, generator=gen).to(batch[0])
    eps = torch.randn(shape, generator=gen).to(batch[0])
    feats, bn_vars = [], []
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    pool = getattr(net, net.pool_name)
    net.train()
    with torch.no_grad(), hooked([pool], lambda m, i, o: feats.append(i[0].double())):
        with hooked(bns, lambda m, i, o: bn_vars.append(i[0].double().var((0, 2, 3), unbiased=False).mean())):
            net(x)
        net(x + ZEN_ALPHA * eps)
    delta = (feats[0] - feats[1]).abs().flatten(1).sum(1).mean()
    return float(torch.log(delta) + sum(0.5 * torch.log(v) for v in bn_vars))


def zico(net: nn.Module, batch: Batch) -> float:
    """ZiCo (Li et al. 2023, Eq. 10): Σ over conv/linear layers of log Σ_θ mean|g_θ| / std(g_θ), the mean
    and (population) std of each weight's gradient over the minibatch's two halves; weights whose gradient
    does not vary are left out, and so is a layer whose sum is 0."""
    x, y = batch
    half = len(x) // 2
    if half < 1:
        return math.nan
    grads = [weight_grads(net, (x[:half], y[:half])), weight_grads(net, (x[half:], y[half:]))]
    total = 0.0
    for g1, g2 in zip(*grads):
        g = torch.stack([g1, g2]).double()
        std = g.std(0, unbiased=False)
        keep = std > 0
        ratio = (g.abs().mean(0)[keep] / std[keep]).sum()
        if ratio > 0:
            total += float(torch.log(ratio))
    return total


def meco(net: nn.Module, batch: Batch) -> float:
    """MeCo (Jiang et al. 2023, Eq. 5): Σ over conv layers of the smallest eigenvalue of the Pearson
    correlation matrix of the layer's output channels for one image (the minibatch's first); undefined
    correlations (a constant channel) count as 0, as in the paper's code."""
    mins = []

    def keep(module, inputs, output):
        corr = torch.corrcoef(output[0].detach().flatten(1).double())
        corr = torch.nan_to_num(corr, nan=0.0, posinf=0.0, neginf=0.0)
        mins.append(torch.linalg.eigvalsh(corr)[0])

    net.train()
    with torch.no_grad(), hooked([m for m in net.modules() if isinstance(m, nn.Conv2d)], keep):
        net(batch[0][:1])
    return float(sum(mins))
