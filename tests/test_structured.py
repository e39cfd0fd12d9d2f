"""Structured substitutions (Gray et al. 2019): names, factorisations, counts, dense equivalence, initialisation."""

import math

import numpy as np
import pytest
import scipy.fft
import torch
import torch.nn.functional as F

from blockswap.core import counting
from blockswap.core.blocktypes import STRUCTURED_TYPES, candidate_set, get_block
from blockswap.core.errors import BlockswapError
from blockswap.core.genotype import Genotype
from blockswap.core.sampling import CostTable, sample_exact
from blockswap.core.substitutions import three_factors, tt_ranks, tucker_ranks
from blockswap.nn import measure
from blockswap.nn.blocks import build_module
from blockswap.nn.models import create_model
from blockswap.nn.structured import ACDC, SepHashed, Shuffle, TensorTrain, Tucker, build_replacement, riffle
from blockswap.nn.structured import compressed_parameters as compressed_of

WIDTHS = [(16, 16, 1), (16, 32, 2), (32, 64, 1), (32, 64, 2), (64, 32, 1)]


# --- Gray et al. 2019's WRN-28-10 rows -----------------------------------------------------------------
def test_wrn_28_10_counts_of_spec_8():
    full = counting.analytic(Genotype.uniform("wrn-28-10", "Conv"))
    sep = counting.analytic(Genotype.uniform("wrn-28-10", "Sep"))
    generic = Genotype.uniform("wrn-28-10", "Generic_0.03")
    assert full.params == 36_479_194 and round(full.ops / 1e9, 3) == 5.246
    assert sep.params == 4_380_138 and round(sep.ops / 1e8, 3) == 6.297
    # Those mult-adds include the skeleton's ReLUs (Ops); plain conv + linear MACs:
    assert (full.macs, sep.macs) == (5_243_328_768, 627_386_624)
    assert counting.analytic(generic).params == 601_162
    assert round(counting.compression_ratio(generic), 4) == 0.0165
    assert counting.compression_ratio(generic) == 601_162 / 36_479_194


# --- names -------------------------------------------------------------------------------------
def test_names_carry_a_validated_hyperparameter():
    assert get_block("Generic_0.03").substitution.hyper == 0.03
    assert get_block("ACDC_12").substitution.hyper == 12
    cases = {"Generic_2": "s must be a number in \\(0, 1\\], got '2'", "Tucker_0": "s must be a number in",
             "SepHashed_x": "got 'x'", "Shuffle_0": "g must be a whole number ≥ 1, got '0'",
             "ACDC_1.5": "L must be a whole number", "Genric_0.1": "unknown block type.*Did you mean 'Generic_0.03'"}
    for name, message in cases.items():
        with pytest.raises(BlockswapError, match=message) as e:
            get_block(name)
        assert "\n" not in str(e.value)
    with pytest.raises(BlockswapError, match="Generic_2"):
        candidate_set("Generic_2")
    assert candidate_set("Generic_0.1") == ["Generic_0.1"]


def test_candidate_sets_with_structured_types():
    assert candidate_set("structured") == STRUCTURED_TYPES
    mixed = candidate_set("blockswap+structured")
    assert mixed[:23] == candidate_set("blockswap") and mixed[23:] == STRUCTURED_TYPES
    with pytest.raises(BlockswapError, match="unknown candidate set"):
        candidate_set("blockswap+structurd")


def test_widths_where_a_type_cannot_be_built():
    assert get_block("Generic_0.03").invalid_reason(16, 32) == "its rank int(0.03·32) is 0"
    assert get_block("Generic_0.03").is_valid(32, 64)  # r = 1
    assert not get_block("Shuffle_4").is_valid(16, 18)
    with pytest.raises(BlockswapError, match="'Generic_0.03' cannot be used at block 0"):
        Genotype.uniform("wrn-16-1", "Generic_0.03")


# --- factorisations ----------------------------------------------------------------------------
@pytest.mark.parametrize("p", [640 * 640, 160 * 320, 16 * 32, 3 * 64, 7 * 11, 96 * 96, 2 * 97])
def test_three_factors_are_the_most_equal(p):
    d = three_factors(p)
    assert math.prod(d) == p and d == tuple(sorted(d))
    divisors = [x for x in range(1, p + 1) if p % x == 0]
    triples = [(a, b, p // (a * b)) for a in divisors for b in divisors if a <= b and p % (a * b) == 0
               and b <= p // (a * b)]
    assert d == min(triples, key=lambda t: (t[2], -t[0]))


def test_factorisation_and_ranks_by_hand():
    assert three_factors(640 * 640) == (64, 80, 80)
    assert three_factors(16 * 32) == (8, 8, 8)
    assert three_factors(2 * 97) == (1, 2, 97)
    assert tt_ranks((64, 80, 80), 0.23) == (round(0.23 * 64), round(0.23 * 80)) == (15, 18)
    assert tt_ranks((1, 2, 97), 1.0) == (1, 2)  # capped by d1 = 1, then min(d2, d3) = 2
    assert tucker_ranks((64, 80, 80), 0.21) == (13, 17, 17)
    assert tucker_ranks((8, 8, 8), 0.01) == (1, 1, 1)


# --- counts: the params formulas, the built module, and the hooks ------------------------------------
def spec_params(name: str, n: int, m: int) -> int:
    """The params of each family, written out (plus the depthwise 3×3's 9N, except Shuffle's)."""
    family, _, text = name.partition("_")
    hyper = float(text) if text else None
    if family == "Sep":
        one = n * m
    elif family == "Generic":
        r = int(hyper * max(n, m))
        one = n * r + r * m
    elif family == "Shuffle":
        g = int(hyper)
        while n % g or m % g or (m // 4) % g:
            g -= 1
        return n * (m // 4) // g + (m // 4) * 9 + (m // 4) * m // g  # the whole conv: no depthwise on the input
    elif family == "SepHashed":
        one = int(hyper * n * m)
    elif family == "TensorTrain":
        d = three_factors(n * m)
        r1 = max(1, round(hyper * min(d[0], d[1])))
        r2 = max(1, round(hyper * min(d[1], d[2])))
        one = d[0] * r1 + r1 * d[1] * r2 + r2 * d[2]
    elif family == "Tucker":
        d = three_factors(n * m)
        r = [max(1, round(hyper * x)) for x in d]
        one = r[0] * r[1] * r[2] + sum(x * y for x, y in zip(d, r))
    else:
        one = 2 * max(n, m) * int(hyper)
    return 9 * n + one


@pytest.mark.parametrize("name", STRUCTURED_TYPES + ["Shuffle_3", "TensorTrain_1", "Tucker_0.5"])
def test_params_and_macs_follow_the_spec_and_the_built_module(name):
    btype = get_block(name)
    for n, m, stride in WIDTHS:
        if not btype.is_valid(n, m):
            continue
        module = build_module(btype, n, m, stride)
        assert sum(p.numel() for p in module.parameters()) == btype.params(n, m) == spec_params(name, n, m)
        got = measure.measure(module, (1, n, 16, 16))
        positions = (16 // stride) ** 2
        assert got.macs == btype.macs(n, m, stride, 16)
        if btype.substitution.family not in ("Generic", "Shuffle"):  # a materialised dense weight
            assert got.macs == (9 * n + n * m) * positions
        if btype.substitution.family == "Shuffle":  # the first grouped 1×1 runs before the stride
            g, q = module.reduce.groups, m // 4
            assert got.macs == n * q // g * 16 ** 2 + (9 * q + q * m // g) * positions
        y = module(torch.randn(2, n, 16, 16))
        assert y.shape == (2, m, 16 // stride, 16 // stride)


def test_shuffle_lowers_its_groups_until_they_divide():
    module = build_module(get_block("Shuffle_4"), 20, 40, 1)
    assert module.reduce.groups == 2 and module.expand.groups == 2  # 4 ∤ 40/4 = 10, 3 ∤ 20, 2 divides all


def test_shuffle_replaces_the_whole_conv_as_linear_shufflenet():
    """Shuffle: grouped 1×1 N→M/4 → shuffle → depthwise 3×3 on M/4 (the stride) → grouped 1×1; nothing else."""
    module = build_module(get_block("Shuffle_4"), 160, 320, 2)
    assert isinstance(module, Shuffle)  # no depthwise conv on the input before it
    convs = [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.groups)
             for c in module.modules() if isinstance(c, torch.nn.Conv2d)]
    assert convs == [(160, 80, (1, 1), (1, 1), 4), (80, 80, (3, 3), (2, 2), 80), (80, 320, (1, 1), (1, 1), 4)]
    assert not any(isinstance(c, (torch.nn.BatchNorm2d, torch.nn.ReLU)) for c in module.modules())
    assert module(torch.randn(2, 160, 8, 8)).shape == (2, 320, 4, 4)
    # CRS-wd decays all three convs (they factor the 3×3 together), as the original's 'shuffle' names did.
    assert module.compressed_parameters() == [module.reduce.weight, module.spatial.weight, module.expand.weight]


def test_acdc_mult_adds_as_the_original_counted():
    g = Genotype.uniform("wrn-16-2", "ACDC_12")
    want = counting.analytic(g).macs
    for s in g.architecture.slots(32):
        for n in (s.cin, s.cout):  # each 1×1 N→M: NM per position as built, 12 layers on N' as published
            width = max(n, s.cout)
            want += (12 * (4 * width + 5 * width * math.log2(width)) - n * s.cout) * s.out_size ** 2
    assert counting.published_macs(g) == pytest.approx(want)
    assert counting.published_macs(Genotype.uniform("wrn-16-2", "TensorTrain_0.5")) == counting.analytic(
        Genotype.uniform("wrn-16-2", "TensorTrain_0.5")).macs


# --- dense equivalence: the forward pass is the 1×1 conv of the weight each module represents -------
def _forward_equals_dense(module, weight: np.ndarray, n: int):
    x = torch.randn(3, n, 5, 5)
    with torch.no_grad():
        want = F.conv2d(x, torch.as_tensor(weight, dtype=torch.float32)[:, :, None, None])
        torch.testing.assert_close(module(x), want, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(module.dense_weight(), torch.as_tensor(weight, dtype=torch.float32),
                                   atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("n,m", [(12, 20), (20, 12), (16, 16)])
def test_tensor_train_represents_its_cores(n, m):
    torch.manual_seed(0)
    module = TensorTrain(n, m, 0.6)
    g1, g2, g3 = (c.detach().double().numpy() for c in module.cores)
    d1, d2, d3 = module.dims
    tensor = np.array([[[(g1[:, i] @ g2[:, j] @ g3[:, k]).item() for k in range(d3)] for j in range(d2)]
                       for i in range(d1)])
    _forward_equals_dense(module, tensor.reshape(m, n), n)


@pytest.mark.parametrize("n,m", [(12, 20), (20, 12)])
def test_tucker_represents_its_core_and_factors(n, m):
    torch.manual_seed(0)
    module = Tucker(n, m, 0.6)
    core = module.core.detach().double().numpy()
    for mode, factor in enumerate(module.factors):  # mode-i product with each factor in turn
        core = np.moveaxis(np.tensordot(factor.detach().double().numpy(), core, axes=(1, mode)), 0, mode)
    _forward_equals_dense(module, core.reshape(m, n), n)


def test_hashed_weights_read_shared_values_with_signs():
    torch.manual_seed(0)
    n, m, k = 12, 20, 37
    module = SepHashed(n, m, k)
    values, index, sign = module.values.detach().numpy(), module.index.numpy(), module.sign.numpy()
    weight = np.array([[sign[o, i] * values[index[o, i]] for i in range(n)] for o in range(m)])
    _forward_equals_dense(module, weight, n)
    uses = np.bincount(index.ravel(), minlength=k)
    assert set(uses) <= {n * m // k, n * m // k + 1} and set(np.unique(sign)) == {-1.0, 1.0}


@pytest.mark.parametrize("n,m", [(12, 20), (20, 12), (16, 16), (7, 9)])
def test_acdc_is_its_chain_of_dct_layers(n, m):
    torch.manual_seed(0)
    layers = 3
    module = ACDC(n, m, layers)
    with torch.no_grad():  # diagonals far from 1, so a wrong order of operations would show
        module.a.normal_(0, 1)
        module.d.normal_(0, 1)
    a, d = module.a.detach().double().numpy(), module.d.detach().double().numpy()
    width = max(n, m)
    half = (width + 1) // 2
    interleaved = [i for pair in zip(range(half), range(half, width)) for i in pair] + (
        [half - 1] if width % 2 else [])
    columns = []
    for i in range(n):  # the chain applied to each padded basis vector, by scipy's orthonormal DCT
        x = np.zeros(width)
        x[i] = 1
        for layer in range(layers):
            if layer:
                x = x[interleaved]
            x = scipy.fft.idct(d[layer] * scipy.fft.dct(a[layer] * x, norm="ortho"), norm="ortho")
        columns.append(x[:m])
    weight = math.sqrt(2 * width / m) * np.stack(columns, axis=1)
    _forward_equals_dense(module, weight, n)


def test_riffle_interleaves_the_halves():
    assert riffle(6).tolist() == [0, 3, 1, 4, 2, 5]
    assert riffle(5).tolist() == [0, 3, 1, 4, 2]


def test_generic_applies_its_two_factors():
    torch.manual_seed(0)
    module = build_replacement(get_block("Generic_0.25").substitution, 16, 24, 3)
    assert (module.first.shape, module.second.shape) == ((6, 16), (24, 6))
    _forward_equals_dense(module, (module.second @ module.first).detach().numpy(), 16)


# --- initialisation: the represented weight has the 2/M variance of the dense 1×1 it replaces -------
@pytest.mark.parametrize("name", ["Generic_0.25", "SepHashed_0.05", "Tucker_0.5", "ACDC_4"])
def test_represented_weight_has_the_replaced_layers_variance(name):
    n, m = 128, 256  # N ≠ M: fan-out 2/M, not fan-in 2/N
    sub, squares = get_block(name).substitution, []
    for seed in range(8):
        torch.manual_seed(seed)
        with torch.no_grad():
            squares.append(build_replacement(sub, n, m, 3).dense_weight().pow(2).mean().item())
    assert abs(np.mean(squares) / (2 / m) - 1) < 0.12, squares


def _tt_svd_by_hand(tensor: np.ndarray, r1: int, r2: int) -> np.ndarray:
    """The rank-(r1, r2) TT-SVD of a d1×d2×d3 array, as the dense tensor its cores represent."""
    d1, d2, d3 = tensor.shape
    u, s, vh = np.linalg.svd(tensor.reshape(d1, d2 * d3), full_matrices=False)
    g1, rest = u[:, :r1], np.diag(s[:r1]) @ vh[:r1]
    u2, s2, vh2 = np.linalg.svd(rest.reshape(r1 * d2, d3), full_matrices=False)
    g2, g3 = u2[:, :r2].reshape(r1, d2, r2), np.diag(s2[:r2]) @ vh2[:r2]
    return np.einsum("ia,ajb,bk->ijk", g1, g2, g3)


@pytest.mark.parametrize("n,m,s", [(128, 256, 0.5), (64, 64, 0.23), (40, 160, 0.7)])
def test_tensor_train_starts_as_the_tt_svd_of_a_dense_init(n, m, s):
    """As the original: the TT-SVD of a weight drawn as the dense 1×1's (variance 2/M), truncated to the
    ranks. G1 and G2 are left-orthonormal, so the scale is in G3 and the same in every layer."""
    stds = []
    for seed in range(6):
        torch.manual_seed(seed)
        module = TensorTrain(n, m, s)
        d1, d2, d3 = module.dims
        (_, _, r1), (_, _, r2) = module.cores[0].shape, module.cores[1].shape
        assert (r1, r2) == tt_ranks(module.dims, s)
        torch.manual_seed(seed)
        drawn = (torch.randn(d1, d2, d3) * (2 / m) ** 0.5).double().numpy()
        dense = module.dense_weight().detach().double().numpy()
        assert np.allclose(dense, _tt_svd_by_hand(drawn, r1, r2).reshape(m, n), atol=1e-5)
        g1 = module.cores[0].detach().double().reshape(d1, r1)
        g2 = module.cores[1].detach().double().reshape(r1 * d2, r2)
        assert torch.allclose(g1.T @ g1, torch.eye(r1, dtype=torch.float64), atol=1e-5)
        assert torch.allclose(g2.T @ g2, torch.eye(r2, dtype=torch.float64), atol=1e-5)
        stds.append(dense.std() / (2 / m) ** 0.5)
    # A truncation keeps part of the drawn weight's energy, alike in every draw.
    assert all(0.3 < x < 1 for x in stds) and max(stds) / min(stds) < 1.1, stds


def test_sep_dense_1x1_gets_the_networks_init():
    net = create_model(Genotype.uniform("wrn-16-8", "Sep"))
    pointwise = net.block3[1].branch[3][1]  # the second substitution of a 512→512 block
    assert abs(pointwise.weight.var().item() / (2 / 512) - 1) < 0.05


# --- whole networks ------------------------------------------------------------------------------
def test_mixed_network_trains_one_step_and_counts_both_ways():
    names = ["Sep", "Generic_0.1", "Shuffle_4", "SepHashed_0.05", "TensorTrain_0.23", "ACDC_2"]
    g = Genotype("wrn-16-2", tuple(names), in_channels=1, image_size=16)
    torch.manual_seed(0)
    net = create_model(g)
    assert measure.measured(net, g) == counting.analytic(g)
    before = [p.detach().clone() for p in net.parameters()]
    logits, _ = net(torch.randn(4, 1, 16, 16))
    F.cross_entropy(logits, torch.tensor([0, 1, 2, 3])).backward()
    torch.optim.SGD(net.parameters(), lr=0.1).step()
    assert all(not torch.equal(b, p) for b, p in zip(before, net.parameters()))  # every tensor learns
    state = net.state_dict()
    assert any(k.endswith("index") for k in state) and not any(k.endswith("dct") for k in state)


# --- the mixed search: Fisher ranks cheap convs and structured layers together ----------------------
def test_mixed_search_samples_structured_blocks_within_budget():
    table = CostTable.build("wrn-16-2", "blockswap+structured")
    budget = 200_000
    genotypes = sample_exact(table, budget, 40, seed=0)
    with_structured = [g for g in genotypes if set(g.blocks) & set(STRUCTURED_TYPES)]
    assert len(with_structured) >= 10
    for g in with_structured[:3]:
        counts = counting.analytic(g)
        assert budget * 0.975 < counts.params < budget * 1.025
        assert measure.measured(create_model(g), g) == counts


# --- the original (BayesWatch/deficient-efficient) on WRN-28-10, CIFAR-10 ------------------------------
# Whole-network (params, mult-adds) of the original's `WideResNet(28, 10, conv_function(name), BasicBlock,
# num_classes=10)` (models/wide_resnet.py; the convs from `conv_function` in models/blocks.py), obtained by
# running its code (commit 06d37fa, on torch 2.14 with tntorch 1.1.2 and gngdb/pytorch-acdc at 60044f3, whose
# DCT matrices were built through a stand-in for the removed torch.rfft - values that no count depends on):
# params = sum(p.numel()) of the built network, mult-adds = its count.py `measure_model(model, 32, 32)`,
# which counts conv and linear multiply-adds, linear bias adds and each nn.ReLU's input - BlockSwap's Ops.
# Its research-log.md prints the same Shuffle_{4,8,16,32} counts (28 Dec 2018) and TensorTrain_0.26 /
# Tucker_0.25 params (4 Jan 2019).
# The classes: Sep = `DepthwiseSep`, Generic = `GenericLowRank`, Shuffle = `LinearShuffleNet`, SepHashed =
# `HalfHashedSeparable` (a `HashedConv2d` 1×1, models/hashed.py), TensorTrain / Tucker = models/decomposed.py's
# (tntorch's `Tensor(w, ranks_tt=...)` / `Tensor(w, ranks_tucker=...)`), ACDC = pytorch-acdc's
# `FastStackedConvACDC`.
ORIGINAL_WRN_28_10 = {
    "Conv": (36_479_194, 5_245_638_922), "Sep": (4_380_138, 629_696_778),
    "Generic_0.03": (601_162, 83_745_034), "Generic_0.1": (1_190_634, 171_206_922),
    "Shuffle_4": (823_674, 117_201_162), "Shuffle_8": (563_594, 76_978_442),
    "Shuffle_16": (437_354, 60_758_282), "Shuffle_32": (378_314, 51_296_522),
    "SepHashed_0.05": (568_426, 629_696_778), "SepHashed_0.1": (769_514, 629_696_778),
    "TensorTrain_0.23": (598_200, 629_696_778), "TensorTrain_0.26": (664_226, 629_696_778),
    "Tucker_0.21": (592_947, 629_696_778), "Tucker_0.25": (681_248, 629_696_778),
    "ACDC_12": (555_498, 1_338_791_912.79), "ACDC_6": (447_978, 636_010_072.00),
}
# Its CRS-wd group (`group_lowrank`: tensors whose names hold 'A'/'D', 'shuffle', 'hashed', 'weight_core' /
# 'weight_u' or 'lowrank'), run the same way: (tensors, params).
ORIGINAL_COMPRESSED = {"Sep": (0, 0), "Generic_0.03": (48, 242_784), "Shuffle_4": (72, 540_320),
                       "SepHashed_0.05": (48, 210_048), "ACDC_12": (528, 197_120)}


def _wrn_28_10_convs():
    """The 24 substituted convs of WRN-28-10 as (N, M, input side, output side)."""
    for s in Genotype.uniform("wrn-28-10", "Conv").architecture.slots(32):
        yield s.cin, s.cout, s.size, s.out_size
        yield s.cout, s.cout, s.out_size, s.out_size


def _original_dims(p: int) -> list[int]:
    """The original's `dimensionize(weight, 3, s)` (models/decomposed.py), read from its code: the dims in
    its order - twice the smallest divisor of what is left that is ≥ round(p^(1/3)), then the rest."""
    root = math.exp(math.log(p) / 3)
    if abs(round(root) - root) < 1e-6:
        return [round(root)] * 3
    dims, rest = [], p
    for _ in range(2):
        d = min(rest, round(root))
        while rest % d:
            d += 1
        dims.append(d)
        rest //= d
    return dims + [rest]


@pytest.mark.parametrize("name", ["Sep", "Generic_0.03", "Generic_0.1", "Shuffle_4", "Shuffle_8", "Shuffle_16",
                                  "Shuffle_32"])
def test_sep_generic_and_shuffle_count_as_the_original(name):
    g = Genotype.uniform("wrn-28-10", name)
    counts = counting.analytic(g)
    assert (counts.params, counts.ops) == ORIGINAL_WRN_28_10[name]
    assert counting.compression_ratio(g) == ORIGINAL_WRN_28_10[name][0] / ORIGINAL_WRN_28_10["Conv"][0]
    if name in ORIGINAL_COMPRESSED:
        compressed = compressed_of(create_model(g))
        assert (len(compressed), sum(p.numel() for p in compressed)) == ORIGINAL_COMPRESSED[name]


def test_the_full_network_counts_as_the_original():
    assert (counting.analytic(Genotype.uniform("wrn-28-10", "Conv")).params,
            counting.analytic(Genotype.uniform("wrn-28-10", "Conv")).ops) == ORIGINAL_WRN_28_10["Conv"]


@pytest.mark.parametrize("name", ["SepHashed_0.05", "SepHashed_0.1"])
def test_sephashed_against_the_original(name):
    """Same mult-adds (both count the dense 1×1). The original has M more params per conv: its `HashedConv2d`
    builds its nn.Conv2d with bias=True whatever it is asked; ours counts int(s·N·M) and no bias."""
    counts = counting.analytic(Genotype.uniform("wrn-28-10", name))
    assert counts.ops == ORIGINAL_WRN_28_10[name][1]
    assert counts.params + sum(m for _, m, _, _ in _wrn_28_10_convs()) == ORIGINAL_WRN_28_10[name][0]


@pytest.mark.parametrize("name", ["ACDC_12", "ACDC_6"])
def test_acdc_against_the_original(name):
    """The original's `FastStackedConvACDC(…, n_layers=L)` builds L layers and drops the last
    (`layers.pop(-1)`), so it has L−1: 2N'(L−1) params per conv where the paper's count is 2N'L. Its count.py counts
    those L−1 layers at the resolution of the layer's input, before the depthwise conv's stride."""
    g = Genotype.uniform("wrn-28-10", name)
    layers = int(name.split("_")[1])
    counts = counting.analytic(g)
    want_params, want_ops = ORIGINAL_WRN_28_10[name]
    assert counts.params - sum(2 * max(n, m) for n, m, _, _ in _wrn_28_10_convs()) == want_params
    ops = counts.ops + sum((layers - 1) * (4 * max(n, m) + 5 * max(n, m) * math.log2(max(n, m))) * side_in ** 2
                           - n * m * side_out ** 2 for n, m, side_in, side_out in _wrn_28_10_convs())
    assert ops == pytest.approx(want_ops, abs=0.01)
    # Ours with L layers, at the output's resolution, as the paper states the rule:
    assert counting.published_macs(g) == pytest.approx(counts.macs + sum(
        layers * (4 * max(n, m) + 5 * max(n, m) * math.log2(max(n, m))) * side_out ** 2 - n * m * side_out ** 2
        for n, m, _, side_out in _wrn_28_10_convs()))
    if name in ORIGINAL_COMPRESSED:  # CRS-wd decays the same diagonals, one layer fewer in the original
        compressed = sum(p.numel() for p in compressed_of(create_model(g)))
        assert compressed == sum(2 * max(n, m) * layers for n, m, _, _ in _wrn_28_10_convs())
        assert compressed * (layers - 1) // layers == ORIGINAL_COMPRESSED[name][1]


@pytest.mark.parametrize("name", ["TensorTrain_0.23", "TensorTrain_0.26"])
def test_tensor_train_against_the_original(name):
    """Same ranks rule, same dense mult-adds; the reshaping differs. Both take "3 near-equal dims": ours
    the most equal (`three_factors`), the original's come from its greedy `dimensionize`. They are the
    same dims (up to order, which TT's count does not see) for every conv of WRN-28-10 but the 320→320 ones:
    (40, 40, 64) here, (50, 64, 32) there."""
    s = float(name.split("_")[1])
    counts = counting.analytic(Genotype.uniform("wrn-28-10", name))
    assert counts.ops == ORIGINAL_WRN_28_10[name][1]
    assert three_factors(320 * 320) == (40, 40, 64) and _original_dims(320 * 320) == [50, 64, 32]

    def tt(dims):
        r1, r2 = max(1, round(s * min(dims[0], dims[1]))), max(1, round(s * min(dims[1], dims[2])))
        return dims[0] * r1 + r1 * dims[1] * r2 + r2 * dims[2]

    ours = sum(tt(three_factors(n * m)) for n, m, _, _ in _wrn_28_10_convs())
    original = sum(tt(_original_dims(n * m)) for n, m, _, _ in _wrn_28_10_convs())
    assert counts.params - ours + original == ORIGINAL_WRN_28_10[name][0]
    assert [sorted(_original_dims(n * m)) == list(three_factors(n * m)) for n, m, _, _ in _wrn_28_10_convs()
            ].count(False) == 7  # the 320→320 convs


@pytest.mark.parametrize("name", ["Tucker_0.21", "Tucker_0.25"])
def test_tucker_against_the_original(name):
    """Same ranks rule, same dense mult-adds. Two differences, both in the params: the original's dims
    (see the TT test), and its core: tntorch keeps the r1×r2×r3 core as a tensor train whose ranks are
    min(d1, r2·r3) and r3 (what rounding the full-rank TT to the Tucker ranks leaves), so its core costs
    r1·R1 + R1·r2·r3 + r3² where the dense core costs r1·r2·r3. (Read from tntorch's
    `Tensor.__init__` / `round_tucker`, and checked on the run's parameter shapes.)"""
    s = float(name.split("_")[1])
    counts = counting.analytic(Genotype.uniform("wrn-28-10", name))
    assert counts.ops == ORIGINAL_WRN_28_10[name][1]

    def tucker(dims, tt_core: bool):
        r = [max(1, round(s * d)) for d in dims]
        factors = sum(d * x for d, x in zip(dims, r))
        if not tt_core:
            return r[0] * r[1] * r[2] + factors
        lead = min(dims[0], r[1] * r[2])
        return r[0] * lead + lead * r[1] * r[2] + r[2] * r[2] + factors

    ours = sum(tucker(three_factors(n * m), False) for n, m, _, _ in _wrn_28_10_convs())
    assert ours == sum(get_block(name).params(n, m) - 9 * n for n, m, _, _ in _wrn_28_10_convs())
    original = sum(tucker(_original_dims(n * m), True) for n, m, _, _ in _wrn_28_10_convs())
    assert counts.params - ours + original == ORIGINAL_WRN_28_10[name][0]
