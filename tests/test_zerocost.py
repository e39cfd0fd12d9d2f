"""The field's zero-cost proxies against their papers' formulas, written out here in numpy on a tiny net;
a proxy that cannot be computed for a net is recorded as missing with the reason, and the job goes on."""

import csv
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from blockswap.core.counting import analytic
from blockswap.core.genotype import Genotype
from blockswap.core.scores import format_scores, read_scores
from blockswap.nn.models import create_model
from blockswap.search import zerocost
from blockswap.search.proxies import Proxy, get_proxy, score_candidates, score_one

SHAPE = dict(in_channels=1, num_classes=10, image_size=16)
MIXED = ("Conv", "DConvA2", "ConvB2", "G2B2", "DConvA2", "Conv")


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    g = Genotype("wrn-10-1", ("Conv", "DConvA2", "G2B2"), **SHAPE)  # one block per group, three cheap types
    return g, create_model(g).to(dtype)


def batch(n=12, seed=1, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 16, 16, generator=gen, dtype=dtype)
    return x, torch.arange(n) % 4  # four classes of three images each


def grads_by_backward(net, x, y):
    """{weight: ∂L/∂W as numpy} by one loss.backward() — independent of the proxies' autograd.grad."""
    net.zero_grad(set_to_none=True)
    F.cross_entropy(net(x)[0], y).backward()
    return [(m.weight.detach().numpy().copy(), m.weight.grad.numpy().copy())
            for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def test_plain_is_sum_of_weight_times_gradient():
    _, net = tiny()
    x, y = batch()
    expected = sum(float((w * g).sum()) for w, g in grads_by_backward(net, x, y))
    assert zerocost.plain(net, (x, y)) == pytest.approx(expected, rel=1e-9)


def test_grasp_hessian_gradient_product_by_finite_differences():
    """−Σ W ⊙ Hg with Hg ≈ (∇L(W + εg) − ∇L(W − εg)) / 2ε, float64."""
    _, net = tiny()
    x, y = batch()
    pairs = grads_by_backward(net, x, y)
    weights = [m.weight for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    eps = 1e-7  # small enough that no ReLU changes side (at 1e-5 some do)

    def grads_at(step):
        with torch.no_grad():
            for w, (_, g) in zip(weights, pairs):
                w.add_(step * torch.from_numpy(g))
        out = [g for _, g in grads_by_backward(net, x, y)]
        with torch.no_grad():
            for w, (_, g) in zip(weights, pairs):
                w.sub_(step * torch.from_numpy(g))
        return out

    plus, minus = grads_at(eps), grads_at(-eps)
    expected = -sum(float((w * (p - m) / (2 * eps)).sum()) for (w, _), p, m in zip(pairs, plus, minus))
    assert zerocost.grasp(net, (x, y)) == pytest.approx(expected, rel=1e-5)


def jacobians(net, x):
    """Per image, ∂(Σ logits of the batch)/∂xᵢ, as numpy (N, D): the Jacobian the papers' code takes."""
    full = torch.autograd.functional.jacobian(lambda inp: net(inp)[0].sum(), x)
    return full.reshape(len(x), -1).numpy()


def test_jacov_eigenvalue_formula():
    _, net = tiny()
    x, y = batch()
    net.train()
    lam = np.linalg.eigvalsh(np.corrcoef(jacobians(net, x)))
    expected = -np.sum(np.log(lam + 1e-5) + 1 / (lam + 1e-5))
    assert zerocost.jacov(net, (x, y)) == pytest.approx(expected, rel=1e-7)


def test_epe_nas_per_class_correlation_energy():
    _, net = tiny()
    x, y = batch(n=13)  # class 0 has four images, the others three
    net.train()
    jac = jacobians(net, x)
    expected = 0.0
    for c in range(4):
        rows = jac[(y == c).numpy()]
        expected += abs(np.sum(np.log(np.abs(np.corrcoef(rows)) + 1e-5)))
    assert zerocost.epe_nas(net, (x, y)) == pytest.approx(expected, rel=1e-7)
    one_each = (x[:4], torch.arange(4))  # no class with two images: undefined
    assert math.isnan(zerocost.epe_nas(net, one_each))


def test_zen_score_formula():
    _, net = tiny()
    x, y = batch()
    gen = torch.Generator().manual_seed(0)
    gx = torch.randn(x.shape, generator=gen).double()  # drawn in float32, as for any network
    ge = torch.randn(x.shape, generator=gen).double()
    net.train()
    bn_inputs = []
    hooks = [m.register_forward_hook(lambda m, i, o: bn_inputs.append(i[0].detach().numpy()))
             for m in net.modules() if isinstance(m, nn.BatchNorm2d)]

    def features(inp):  # the network up to its global pooling, module by module
        for name in (*net.stem_names, *net.group_names, *net.head_names):
            inp = getattr(net, name)(inp)
        return inp.detach().numpy()

    with torch.no_grad():
        f0 = features(gx)
        for h in hooks:
            h.remove()
        f1 = features(gx + 0.01 * ge)
    delta = np.mean(np.abs(f0 - f1).reshape(len(x), -1).sum(1))
    expected = np.log(delta) + sum(np.log(np.sqrt(a.var(axis=(0, 2, 3)).mean())) for a in bn_inputs)
    assert len(bn_inputs) == sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert zerocost.zen(net, (x, y)) == pytest.approx(expected, rel=1e-9)


def test_zico_mean_over_std_of_the_halves():
    _, net = tiny()
    x, y = batch()
    halves = [grads_by_backward(net, x[:6], y[:6]), grads_by_backward(net, x[6:], y[6:])]
    expected = 0.0
    for (_, g1), (_, g2) in zip(*halves):
        g = np.stack([g1, g2])
        std, mean_abs = g.std(0), np.abs(g).mean(0)
        nz = std > 0
        s = (mean_abs[nz] / std[nz]).sum()
        expected += np.log(s) if s > 0 else 0.0
    assert zerocost.zico(net, (x, y)) == pytest.approx(expected, rel=1e-9)


def test_meco_smallest_eigenvalue_per_conv():
    _, net = tiny()
    x, y = batch()
    outs = []
    hooks = [m.register_forward_hook(lambda m, i, o: outs.append(o[0].detach().numpy()))
             for m in net.modules() if isinstance(m, nn.Conv2d)]
    net.train()
    with torch.no_grad():
        net(x[:1])
    for h in hooks:
        h.remove()
    expected = 0.0
    for o in outs:
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.nan_to_num(np.corrcoef(o.reshape(o.shape[0], -1)), nan=0.0, posinf=0.0, neginf=0.0)
        expected += np.linalg.eigvalsh(corr)[0]
    assert zerocost.meco(net, (x, y)) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_flops_and_params_are_the_analytic_counts():
    g, net = tiny()
    scores = score_candidates([g], ["params", "flops"], batch(dtype=torch.float32), seed=0)[0]
    counts = analytic(g)
    assert scores == {"params": counts.params, "flops": counts.macs}
    assert counts.macs == sum(  # one image: every conv's output positions × its kernel's mult-adds, + the fc
        int(np.prod(o.shape[2:])) * m.weight.numel() for m, o in _conv_outputs(net)) + net.fc.weight.numel()


def _conv_outputs(net):
    got = []
    hooks = [m.register_forward_hook(lambda m, i, o: got.append((m, o))) for m in net.modules()
             if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        net.float().eval()(torch.zeros(1, 1, 16, 16))
    for h in hooks:
        h.remove()
    return got


def test_a_proxy_that_fails_or_is_not_finite_is_missing_with_its_reason(tmp_path):
    g, _ = tiny()

    def broken(net, batches, genotype):
        raise RuntimeError("shape it cannot handle\nsecond line")

    proxies = [get_proxy("fisher"), Proxy("broken", broken, 1, "raises"), get_proxy("epe_nas"),
               get_proxy("params")]
    x, _ = batch(n=4, dtype=torch.float32)
    scores = score_one(g, proxies, (x, torch.arange(4)), seed=0, minibatches=1)
    assert math.isfinite(scores["fisher"]) and scores["params"] == analytic(g).params
    assert math.isnan(scores["broken"]) and math.isnan(scores["epe_nas"])
    assert scores.missing == {"broken": "RuntimeError: shape it cannot handle", "epe_nas": "not finite (nan)"}
    assert set(scores.seconds) == {"fisher", "broken", "epe_nas", "params"}
    assert all(s >= 0 for s in scores.seconds.values())
    # The CSV keeps the NaN and the reason; reading it back gives NaN, not an error.
    row = {"id": g.id, "params": 1, "ops": 1, "scores": scores, "rank": 1, "blocks": g.blocks,
           "missing": scores.missing, "seconds": scores.seconds}
    path = tmp_path / "s.csv"
    path.write_text(format_scores([row], ["fisher", "broken", "epe_nas"], timings=True))
    line = next(csv.DictReader(path.read_text().splitlines()))
    assert line["missing"] == "broken: RuntimeError: shape it cannot handle; epe_nas: not finite (nan)"
    assert float(line["broken_seconds"]) >= 0
    rows, columns = read_scores(path)
    assert columns == {"fisher": "fisher", "broken": "broken", "epe_nas": "epe_nas"}
    assert math.isnan(rows[0]["epe_nas"])
