"""Fisher potential against a direct computation of BlockSwap Eq. 2, the proxy registry, and `score`."""

import csv
import json
import math

import pytest
import torch
import torch.nn.functional as F

from blockswap import cli
from blockswap.core.counting import analytic
from blockswap.core.errors import BlockswapError
from blockswap.core.genotype import Genotype
from blockswap.nn.models import create_model
from blockswap.search.fisher import fisher_per_block, train_k_steps
from blockswap.search.proxies import candidate_seed, get_proxy, parse_proxies, proxy_names, rank, score_candidates

from conftest import write_fashion

pytestmark = pytest.mark.usefixtures("one_thread")


SHAPE = dict(in_channels=1, num_classes=10, image_size=16)
MIXED = ("Conv", "DConvA2", "ConvB2", "G2B2", "DConvA2", "Conv")  # per-conv and per-block types


def tiny(blocks=MIXED, seed=0):
    torch.manual_seed(seed)
    g = Genotype("wrn-16-1", blocks, **SHAPE)
    return g, create_model(g)


def batch(n=8, seed=1, size=16):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, size, size, generator=gen), torch.randint(10, (n,), generator=gen)


def direct_fisher(net, x, y):
    """Eq. 2 by hand: a manual WRN forward keeping each branch output (retain_grad), explicit sums."""
    acts = []
    h = net.conv1(x)
    for b in net.blocks:
        pre = b.relu1(b.bn1(h))
        a = b.branch(pre)
        a.retain_grad()
        acts.append(a)
        h = a + (h if b.shortcut is None else b.shortcut(pre))
    logits = net.fc(net.relu(net.bn(h)).mean((2, 3)))
    F.cross_entropy(logits, y).backward()  # batch-mean loss, so g carries the 1/N
    n = len(x)
    out = []
    for a in acts:
        A, G = a.detach().double(), a.grad.double()
        delta = sum(float((A[i, c] * G[i, c]).sum()) ** 2 for c in range(A.shape[1]) for i in range(n))
        out.append(delta / (2 * n))
    return out


@pytest.mark.parametrize("blocks", [("Conv",) * 6, ("DConvA2",) * 6, ("ConvB2",) * 6, MIXED])
def test_fisher_per_block_matches_eq2(blocks):
    g, net = tiny(blocks)
    x, y = batch()
    ours = fisher_per_block(net, [(x, y)])
    expected = direct_fisher(net, x, y)
    assert len(ours) == len(net.blocks) == 6
    assert all(v > 0 for v in expected)
    assert ours.tolist() == pytest.approx(expected, rel=1e-4)


def test_fisher_sums_over_minibatches():
    _, net = tiny()
    b1, b2 = batch(seed=1), batch(seed=2)
    both = fisher_per_block(net, [b1, b2])
    assert both.tolist() == pytest.approx((fisher_per_block(net, [b1]) + fisher_per_block(net, [b2])).tolist(),
                                          rel=1e-6)


def _attached(net):
    return [name for name, m in net.named_modules()
            if m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks]


def test_fisher_leaves_nothing_attached():
    _, net = tiny()
    net.fc.bias.requires_grad_(False)  # a parameter frozen by the caller stays frozen
    fisher_per_block(net, [batch()])
    assert _attached(net) == []
    assert [n for n, p in net.named_parameters() if not p.requires_grad] == ["fc.bias"]
    assert all(p.grad is None for p in net.parameters())  # no weight gradients were computed
    with pytest.raises(RuntimeError):  # a failing forward still detaches everything
        fisher_per_block(net, [(torch.randn(2, 3, 16, 16), torch.zeros(2, dtype=torch.long))])
    assert _attached(net) == []
    assert [n for n, p in net.named_parameters() if not p.requires_grad] == ["fc.bias"]


def test_fisher_on_post_activation_resnet():
    torch.manual_seed(0)
    g = Genotype.uniform("resnet18", "ConvB2", num_classes=10, image_size=32)
    net = create_model(g)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(10, (4,))
    per_block = fisher_per_block(net, [(x, y)])
    assert len(per_block) == 8 and bool(torch.isfinite(per_block).all()) and float(per_block.sum()) > 0
    assert _attached(net) == []


def test_resnet_probe_reads_the_branch_output_after_its_last_bn():
    """BlockSwap §3.3: in the post-activation layout the branch's output is bn2's; a probe before bn2 would see an
    activation whose scale train-mode BN removes."""
    torch.manual_seed(0)
    net = create_model(Genotype.uniform("resnet18", "Conv", num_classes=10, image_size=32)).train()
    block, seen = net.layer2[0], {}
    block.probe.register_forward_hook(lambda m, i, o: seen.setdefault("probe", o))
    block.bn2.register_forward_hook(lambda m, i, o: seen.setdefault("bn2", o))
    net(torch.randn(4, 3, 32, 32))
    assert torch.equal(seen["probe"], seen["bn2"])
    # Scaling the branch's last conv leaves its BN output, hence the probe's Fisher, unchanged.
    x, y = torch.randn(4, 3, 32, 32), torch.randint(10, (4,))
    before = fisher_per_block(net, [(x, y)])
    with torch.no_grad():
        block.conv2.weight.mul_(10)
    after = fisher_per_block(net, [(x, y)])
    assert torch.allclose(before, after, rtol=1e-3)


def test_every_registered_proxy_gives_a_finite_float():
    g, _ = tiny()
    b = batch(n=16)
    values = score_candidates([g], proxy_names(), [b, batch(n=16, seed=3)], seed=0, minibatches=2)[0]
    assert list(values) == proxy_names()
    for name, v in values.items():
        assert isinstance(v, float) and math.isfinite(v), name
    assert values["params"] == analytic(g).params == sum(p.numel() for p in create_model(g).parameters())
    assert 0 <= values["train_accuracy"] <= 1 and values["train_loss"] > 0
    for name in proxy_names():  # no proxy leaves hooks behind on the network it was given
        _, net = tiny()  # a fresh one each: proxies may train, cast or rescale their network
        get_proxy(name)(net, [b], g)
        assert _attached(net) == [], name


def test_train_k_steps_measures_each_pass_before_its_step():
    """BlockSwap §4.2 ("after 1, 10, and 100 minibatches"): Fisher and grad norms are taken during k SGD steps,
    each before its step; ℓ2 after them."""
    b1, b2 = batch(n=16, seed=1), batch(n=16, seed=2)
    g, net = tiny()
    measured = train_k_steps(net, [b1, b2])
    # By hand: pass 1 at the initial weights, one SGD step on it, pass 2 at the stepped weights.
    _, ref = tiny()
    opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    fisher, grads, correct = 0.0, 0.0, 0
    for x, y in (b1, b2):
        fisher += float(fisher_per_block(ref, [(x, y)]).sum())
        opt.zero_grad()
        logits = ref(x)[0]
        F.cross_entropy(logits, y).backward()
        grads += sum(float(m.weight.grad.double().norm()) for m in ref.modules()
                     if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
        correct += int((logits.argmax(1) == y).sum())
        opt.step()
    assert measured["fisher"] == pytest.approx(fisher, rel=1e-5)
    assert measured["grad_norm"] == pytest.approx(grads, rel=1e-6)
    assert measured["train_accuracy"] == correct / 32
    for a, b in zip(net.parameters(), ref.parameters()):  # both ended at the same stepped weights
        assert torch.allclose(a, b, atol=1e-6)


def test_every_metric_changes_with_k_but_k1_fisher_is_the_search():
    g, _ = tiny()
    batches = [batch(n=16, seed=s) for s in range(4)]
    names = ["fisher", "grad_norm", "l2_norm", "train_accuracy", "snip"]
    k1 = score_candidates([g], names, batches, seed=0, minibatches=1)[0]
    k4 = score_candidates([g], names, batches, seed=0, minibatches=4)[0]
    for name in ("fisher", "grad_norm", "l2_norm", "snip"):
        assert k1[name] != k4[name], name
    search = score_candidates([g], ["fisher"], batches, seed=0, minibatches=1)[0]["fisher"]
    assert k1["fisher"] == pytest.approx(search, rel=1e-6)  # with weight gradients or without: one value


def test_signs_and_ranking():
    assert {n: get_proxy(n).sign for n in proxy_names()} == {
        "fisher": 1, "grad_norm": 1, "snip": 1, "l2_norm": 1, "synflow": 1, "naswot": 1, "params": 1,
        "flops": 1, "plain": 1, "grasp": 1, "jacov": 1, "epe_nas": 1, "zen": 1, "zico": 1, "meco": 1,
        "train_accuracy": 1, "train_loss": -1}
    assert get_proxy("nwot") is get_proxy("naswot")  # NAS-Bench-Suite-Zero's name
    assert [p.name for p in parse_proxies("fisher,nwot")] == ["fisher", "naswot"]
    assert rank([1.0, 3.0, 2.0], +1) == [3, 1, 2]
    assert rank([1.0, 3.0, 2.0], -1) == [1, 3, 2]
    assert rank([2.0, float("nan"), 2.0, 5.0], +1) == [2, 4, 3, 1]  # ties keep order, NaN last


def test_unknown_proxy_is_a_clear_error():
    with pytest.raises(BlockswapError, match=r"unknown proxy 'fishr'.*Did you mean 'fisher'.*Valid: fisher"):
        get_proxy("fishr")
    with pytest.raises(BlockswapError, match="named twice"):
        parse_proxies("fisher,fisher")


def test_scores_are_reproducible_and_seeded_per_candidate():
    gs = [Genotype("wrn-10-1", blocks, **SHAPE) for blocks in
          [("Conv",) * 3, ("ConvB2",) * 3, ("DConvA2", "G2B2", "Conv")]]
    b = batch()
    first = score_candidates(gs, ["fisher"], b, seed=0)
    assert score_candidates(gs, ["fisher"], b, seed=0) == first
    # Seeds come from the genotype's content, not its position in the list.
    assert score_candidates(gs[::-1], ["fisher"], b, seed=0) == first[::-1]
    other = score_candidates(gs, ["fisher"], b, seed=1)
    assert all(o["fisher"] != f["fisher"] for o, f in zip(other, first))
    assert candidate_seed(0, gs[0].id) != candidate_seed(1, gs[0].id)
    forked = score_candidates(gs, ["fisher"], b, seed=0, workers=2)
    assert [r["fisher"] for r in forked] == pytest.approx([r["fisher"] for r in first], rel=1e-5)
    assert torch.get_num_threads() >= 1  # the parent's thread setting is untouched


# --------------------------------------------------------------------------------------------------- CLI
@pytest.fixture
def score_setup(tmp_path):
    write_fashion(tmp_path, n_train=48, n_test=48)
    cands = tmp_path / "cands.jsonl"
    gs = [Genotype("wrn-10-1", b, in_channels=1, num_classes=10, image_size=28)
          for b in [("Conv",) * 3, ("ConvB2",) * 3, ("DConvA2", "G2B2", "Conv"), ("G2B2",) * 3]]
    cands.write_text("".join(json.dumps({"id": g.id, **g.to_dict(), **analytic(g).to_dict()}) + "\n" for g in gs))

    def run(out, *extra):
        return cli.main(["score", str(cands), "--dataset", "fashion-mnist", "--data-dir", str(tmp_path),
                         "--batch-size", "16", "--quiet", "-o", str(tmp_path / out), *extra])
    return tmp_path, gs, run


def test_score_cli_is_reproducible(score_setup):
    tmp, gs, run = score_setup
    assert run("a.csv", "--proxy", "fisher,params", "--best", str(tmp / "best.json")) == 0
    assert run("b.csv", "--proxy", "fisher,params", "--workers", "1") == 0
    text = (tmp / "a.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    assert list(rows[0]) == ["id", "params", "ops", "fisher", "params_proxy", "rank", "blocks", "missing"]
    assert all(r["missing"] == "" for r in rows)
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4]
    fishers = [float(r["fisher"]) for r in rows]
    assert fishers == sorted(fishers, reverse=True)
    assert {r["id"] for r in rows} == {g.id for g in gs}
    by_id = {g.id: g for g in gs}
    assert all(r["blocks"] == " ".join(by_id[r["id"]].blocks) for r in rows)
    assert all(int(r["params"]) == analytic(by_id[r["id"]]).params for r in rows)
    assert json.loads((tmp / "best.json").read_text()) == by_id[rows[0]["id"]].to_dict()
    # Same ranking from a one-process run (values may differ in the last bits across thread counts).
    other = list(csv.DictReader((tmp / "b.csv").read_text().splitlines()))
    assert [r["id"] for r in other] == [r["id"] for r in rows]
    assert run("c.csv", "--proxy", "fisher,params") == 0
    assert (tmp / "c.csv").read_text() == text
    assert run("d.csv", "--seed", "1") == 0
    assert [r["fisher"] for r in csv.DictReader((tmp / "d.csv").read_text().splitlines())] != [
        r["fisher"] for r in rows]


def test_score_cli_fresh_batch_and_minibatches(score_setup):
    tmp, _, run = score_setup
    assert run("f1.csv", "--fresh-batch", "--minibatches", "2", "--proxy", "fisher,train_accuracy") == 0
    assert run("f2.csv", "--fresh-batch", "--minibatches", "2", "--proxy", "fisher,train_accuracy") == 0
    assert (tmp / "f1.csv").read_text() == (tmp / "f2.csv").read_text()
    assert run("fixed.csv", "--minibatches", "2") == 0
    fresh = {r["id"]: r["fisher"] for r in csv.DictReader((tmp / "f1.csv").read_text().splitlines())}
    fixed = {r["id"]: r["fisher"] for r in csv.DictReader((tmp / "fixed.csv").read_text().splitlines())}
    assert fresh.keys() == fixed.keys() and all(fresh[k] != fixed[k] for k in fresh)


def test_score_cli_errors(score_setup, capsys):
    tmp, _, run = score_setup
    assert run("x.csv", "--proxy", "fisher,nope") == 2
    assert "unknown proxy 'nope'" in capsys.readouterr().err
    g = Genotype.uniform("wrn-10-1", "Conv", in_channels=1, num_classes=10, image_size=32)
    (tmp / "cands.jsonl").write_text(json.dumps(g.to_dict()) + "\n")
    assert run("x.csv") == 2
    err = capsys.readouterr().err
    assert "shaped for another dataset than fashion-mnist: image_size 32 (dataset: 28)" in err and err.count("\n") == 1
    assert not (tmp / "x.csv").exists()
