"""Fisher potential's parts (BlockSwap §3.3, Eq. 2-3) and "after k minibatches" training (§4.2, Table 1).

Δ_block = Σ_c 1/(2N) Σ_n (Σ_ij a_ncij g_ncij)², a = a block's probe output, g = ∂L/∂a, L = batch-mean CE.
`fisher_per_block` computes it from activation gradients only, one pass at the current weights (the
search); `train_k_steps` accumulates it, with the other trajectory metrics, over k SGD steps; `probed` and
`fisher_delta` are the seams the detection Fisher (`detection.fisher`) shares.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import zerocost

Batch = tuple[torch.Tensor, torch.Tensor]


@contextlib.contextmanager
def probed(net: nn.Module, probes: Sequence[nn.Module] | None = None):
    """Collect each probe's output during forward (default: every block's `probe` of `net`), with the
    parameters of `net` frozen; undone on exit.

    Frozen parameters mean autograd records no weight-gradient work. The first probe's output then
    has no graph behind it, so it is made a leaf that requires grad; every later block depends on it.
    """
    acts: list[torch.Tensor] = []

    def keep(module, inputs, output):
        if not output.requires_grad:
            output.requires_grad_()
        acts.append(output)

    frozen = [p for p in net.parameters() if p.requires_grad]
    handles = []
    try:
        for p in frozen:
            p.requires_grad_(False)
        probes = [b.probe for b in net.blocks] if probes is None else probes
        handles = [p.register_forward_hook(keep) for p in probes]
        yield acts
    finally:
        for h in handles:
            h.remove()
        for p in frozen:
            p.requires_grad_(True)


def fisher_delta(acts: Sequence[torch.Tensor], grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """Δ_block of one pass (float64): Σ_c 1/(2N) Σ_n (Σ_ij a·g)². (A product and a sum: 4× faster on the CPU
    than einsum's contraction, which goes through a batched matmul of 1-wide matrices.)"""
    per_nc = [(a * g).sum((2, 3)).double() for a, g in zip(acts, grads)]
    return torch.stack([s.pow(2).sum() for s in per_nc]).cpu() / (2 * len(acts[0]))


# The original ablation code's optimiser for "after k minibatches of training".
K_STEP_SGD = {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}


def train_k_steps(net: nn.Module, batches: Sequence[Batch]) -> dict[str, float]:
    """One SGD step per minibatch from the net's current weights (BlockSwap §4.2); returns what the steps measure,
    each before its step: fisher (Δ summed over the passes), grad_norm (Σ over steps of Σ_W ‖∂L/∂W‖),
    train_accuracy and train_loss (of the minibatches as they are trained on). `net` ends stepped."""
    net.train()
    opt = torch.optim.SGD(net.parameters(), **K_STEP_SGD)
    weights = zerocost.weights(net)
    acts: list[torch.Tensor] = []

    def keep(module, inputs, output):
        output.retain_grad()
        acts.append(output)

    fisher = torch.zeros(len(net.blocks), dtype=torch.float64)
    grad_norm = correct = loss_sum = count = 0.0
    handles = [b.probe.register_forward_hook(keep) for b in net.blocks]
    try:
        with torch.enable_grad():
            for x, y in batches:
                acts.clear()
                opt.zero_grad(set_to_none=True)
                logits, _ = net(x)
                loss = F.cross_entropy(logits, y)
                loss.backward()
                with torch.no_grad():
                    fisher += fisher_delta(acts, [a.grad for a in acts])
                    grad_norm += float(sum(w.grad.double().norm() for w in weights))
                    correct += float((logits.argmax(1) == y).sum())
                    loss_sum += float(loss) * len(y)
                    count += len(y)
                opt.step()
    finally:
        for h in handles:
            h.remove()
        acts.clear()
    return {"fisher": float(fisher.sum()), "grad_norm": grad_norm, "train_accuracy": correct / count,
            "train_loss": loss_sum / count}


def fisher_per_block(net: nn.Module, batches: Sequence[Batch]) -> torch.Tensor:
    """Δ_block (float64, one per block in forward order) at the net's current weights, summed over `batches`,
    from activation gradients only (no weight gradients, no step).

    Δ_block = Σ_c 1/(2N) Σ_n (Σ_ij a_ncij g_ncij)², a = probe output, g = ∂L/∂a, L = batch-mean CE.
    """
    net.train()
    total = torch.zeros(len(net.blocks), dtype=torch.float64)
    with probed(net) as acts, torch.enable_grad():
        for x, y in batches:
            acts.clear()
            logits, _ = net(x)
            grads = torch.autograd.grad(F.cross_entropy(logits, y), acts)
            with torch.no_grad():
                total += fisher_delta(acts, grads)
            del logits, grads
            acts.clear()  # drop the graph before the next batch
    return total
