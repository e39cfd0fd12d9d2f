"""Analytic counts reproduce the papers' numbers and equal the counts measured on built networks."""

import pytest
import torch
import torchvision
from torch import nn

from blockswap.core import counting
from blockswap.core.arch import BottleneckResNet, get_architecture
from blockswap.core.blocktypes import BLOCK_TYPES, BLOCKSWAP_TYPES, MIDDLE, STRUCTURED_TYPES, get_block
from blockswap.core.genotype import Genotype
from blockswap.nn import measure
from blockswap.nn.models import build_block, create_model
from blockswap.report.tables import fmt_scaled

# BlockSwap §3's types: WRN-40-2 with every block one type (whole network, head included).
ALL_ONE_TYPE_WRN_40_2 = {
    "Conv": 2_243_546, "DConvA2": 1_358_970, "DConvA4": 814_650, "DConvA8": 542_490, "DConvA16": 406_410,
    "DConvG16": 641_274, "DConvG8": 455_802, "DConvG4": 363_066, "DConvG2": 316_698, "DConv": 293_514,
    "ConvB2": 431_834, "ConvB4": 150_938, "G16B2": 238_298, "G8B2": 189_914, "G4B2": 165_722,
    "G2B2": 153_626, "A2B2": 286_682, "A4B2": 214_106, "A8B2": 177_818, "A16B2": 159_674,
    "G8B4": 102_554, "G4B4": 90_458, "G2B4": 84_410,
}


@pytest.mark.parametrize("block,params", ALL_ONE_TYPE_WRN_40_2.items())
def test_all_one_type_table(block, params):
    assert counting.analytic(Genotype.uniform("wrn-40-2", block)).params == params


def test_table_covers_the_23_code_types():
    assert sorted(ALL_ONE_TYPE_WRN_40_2) == sorted(BLOCKSWAP_TYPES)


# BlockSwap Table 2: (params, Ops) rounded to 0.1K / 0.1M as the paper prints them.
@pytest.mark.parametrize("model,block,k_params,m_ops", [
    ("wrn-40-2", "Conv", 2243.5, 328.3), ("wrn-16-2", "Conv", 691.7, 101.4), ("wrn-40-1", "Conv", 563.9, 83.6),
    ("wrn-16-1", "Conv", 175.1, 26.8)])
def test_table2_counts(model, block, k_params, m_ops):
    c = counting.analytic(Genotype.uniform(model, block))
    assert round(c.params / 1e3, 1) == k_params
    assert round(c.ops / 1e6, 1) == m_ops


def test_wrn_40_2_exact_and_plain_macs():
    c = counting.analytic(Genotype.uniform("wrn-40-2", "Conv"))
    # Ops = MACs + linear bias adds + skeleton ReLU inputs (18 pre-activations, 18 middles, the head's).
    relus = sum(s.cin * s.size ** 2 + s.cout * s.out_size ** 2 for s in get_architecture("wrn-40-2").slots(32))
    assert c.ops == c.macs + 10 + relus + 128 * 8 * 8
    assert (c.params, c.ops, c.macs) == (2_243_546, 328_303_882, 327_599_360)
    assert round(c.macs / 1e6, 1) == 327.6


def test_all_mbconv6():
    c = counting.analytic(Genotype.uniform("wrn-40-2", "MBConv6"))
    # MBConv6's params per block: 6i² + 12i + 9·6i + 12i + 6i·o + 2o, plus input BN and 1×1 shortcuts.
    arch = get_architecture("wrn-40-2")
    expected = arch.fixed_params(3, 10)
    for s in arch.slots(32):
        i, o = s.cin, s.cout
        expected += 6 * i * i + 12 * i + 9 * 6 * i + 12 * i + 6 * i * o + 2 * o + 2 * i
        expected += i * o if s.has_shortcut_conv else 0
    assert c.params == expected == 1_500_986
    # The paper prints 1,500.9K / 231.7M: MBConv6's inner ReLUs are not counted (counting.py).
    assert abs(c.params / 1e3 - 1500.9) < 0.1
    assert round(c.ops / 1e6, 1) == 231.7


# The genotypes released with the BlockSwap code (genotypes/bs*.csv) and their Table 2 (params K, Ops M).
RELEASED_CIFAR = {
    (162.2, 33.9): "A2B2 G16B2 G8B4 DConv DConv A4B2 DConvG4 DConvG4 DConvG2 G2B4 A8B2 G4B2 G16B2 G2B4 G8B4 G2B2 "
                   "G4B4 ConvB4",
    (217.0, 38.8): "A16B2 A16B2 ConvB4 DConv G16B2 DConv A8B2 ConvB2 G2B2 DConvG16 G4B2 G8B2 DConvG2 A16B2 A8B2 "
                   "A16B2 A8B2 G4B2",
    (289.2, 65.9): "DConvA16 DConvA2 DConvG4 DConvA2 A8B2 ConvB4 DConvA2 ConvB2 G4B2 DConvG8 DConvA16 A16B2 "
                   "DConvG2 G16B2 DConvG4 G8B2 G2B2 G8B2",
    (404.2, 92.8): "Conv DConvG16 DConv DConvA2 ConvB2 DConvA8 DConvG2 DConvG16 DConvA8 DConvA16 DConvG8 DConvA4 "
                   "DConvG4 DConvG4 A4B2 DConvG8 DConvG8 G16B2",
    (556.0, 89.5): "DConvG16 G8B2 DConvA2 DConv DConvG16 DConvG4 ConvB4 G16B2 DConvA4 DConvG8 A2B2 A4B2 DConvG2 "
                   "DConvA2 DConvG16 DConvG2 DConvG16 DConvG2",
    (811.4, 132.5): "ConvB4 Conv A16B2 DConvA4 DConvA8 ConvB4 DConvA4 Conv DConvA16 DConvA2 Conv DConvG16 DConvG8 "
                    "DConvA2 DConvA2 G8B2 G4B2 DConvA8",
}


@pytest.mark.parametrize("row,blocks", RELEASED_CIFAR.items(), ids=[f"{k}K" for k, _ in RELEASED_CIFAR])
def test_released_genotypes_print_table2_exactly(row, blocks):
    g = Genotype("wrn-40-2", tuple(blocks.split()))
    c = counting.analytic(g)
    assert (fmt_scaled(c.params, 1e3, 1), fmt_scaled(c.ops, 1e6, 1)) == tuple(map(str, row))
    assert measure.measured(create_model(g), g) == c


@pytest.mark.parametrize("name,factory,params", [
    ("resnet34", torchvision.models.resnet34, 21_797_672), ("resnet18", torchvision.models.resnet18, 11_689_512),
    ("resnet50", torchvision.models.resnet50, 25_557_032), ("resnet101", torchvision.models.resnet101, 44_549_160),
    ("wide_resnet50_2", torchvision.models.wide_resnet50_2, 68_883_240)])
def test_resnet_equals_torchvision(name, factory, params):
    g = Genotype.uniform(name, "Conv")
    ours, theirs = create_model(g), factory()
    assert counting.analytic(g).params == params == sum(p.numel() for p in theirs.parameters())
    ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
    assert list(ours_sd) == list(theirs_sd)
    assert all(ours_sd[k].shape == theirs_sd[k].shape for k in ours_sd)
    # With torchvision's weights loaded, the logits agree.
    ours.load_state_dict(theirs_sd)
    x = torch.randn(2, 3, 64, 64)
    ours.eval(), theirs.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x)[0], theirs(x), rtol=1e-4, atol=1e-4)


def test_resnet_macs_match_torchvision_and_paper():
    for name, factory, paper_gmacs in (("resnet34", torchvision.models.resnet34, 3.669),
                                       ("resnet18", torchvision.models.resnet18, 1.818),
                                       ("resnet50", torchvision.models.resnet50, 4.09)):
        theirs = factory().eval()
        macs = 0

        def hook(m, i, o):
            nonlocal macs
            if isinstance(m, nn.Conv2d):
                macs += o.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
            else:
                macs += m.in_features * m.out_features
        for m in theirs.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.register_forward_hook(hook)
        with torch.no_grad():
            theirs(torch.zeros(1, 3, 224, 224))
        ours = counting.analytic(Genotype.uniform(name, "Conv")).macs
        assert ours == macs
        # The papers' figures come from other counters; ours are within 0.25% of them (ResNet-50: 4.09 GMACs,
        # torchvision's own figure).
        assert abs(ours / 1e9 - paper_gmacs) / paper_gmacs < 0.0025


# Every type registered one by one, plus the structured families' fixed list (registered as a pattern).
WALKED = list(dict.fromkeys(list(BLOCK_TYPES) + STRUCTURED_TYPES))


@pytest.mark.parametrize("model,image_size", [("wrn-40-2", 32), ("wrn-16-2", 32), ("resnet34", 224),
                                              ("resnet50", 32)])
def test_every_block_type_at_every_position_analytic_equals_measured(model, image_size):
    """Walk the registry: each type at each block position (each distinct one: a stage's later blocks are
    alike), the built block counted by hooks."""
    arch = get_architecture(model)
    slots = list({(s.cin, s.cout, s.stride, s.size, s.width): s for s in arch.slots(image_size)}.values())
    checked = middles = 0
    for name in WALKED:
        btype = get_block(name)
        for slot in slots:
            if arch.invalid_reason(slot, btype):
                continue
            block = build_block(arch, slot, btype)
            got = measure.measure(block, (1, slot.cin, slot.size, slot.size))
            want = (arch.block_params(slot, btype), arch.block_ops(slot, btype), arch.block_macs(slot, btype))
            assert (got.params, got.ops, got.macs) == want, (name, slot)
            checked += 1
            middles += btype.kind == MIDDLE
    assert checked >= len(slots) * 30
    if isinstance(arch, BottleneckResNet):  # the middle types are walked too
        assert middles >= len(slots) * 20


@pytest.mark.parametrize("model", ["wrn-40-2", "wrn-16-2"])
def test_every_block_type_whole_network_analytic_equals_measured(model):
    """Each type in every block where it is valid (Conv elsewhere): whole network, both ways."""
    arch = get_architecture(model)
    slots = arch.slots(32)
    for name in WALKED:
        btype = get_block(name)
        blocks = tuple("Conv" if arch.invalid_reason(s, btype) else name for s in slots)
        g = Genotype(model, blocks)
        assert measure.measured(create_model(g), g) == counting.analytic(g), name


@pytest.mark.parametrize("model,image_size", [("resnet34", 128), ("resnet50", 64)])
def test_resnet_mixed_network_analytic_equals_measured(model, image_size):
    arch = get_architecture(model)
    names = arch.candidate_types("all")
    g = Genotype(model, tuple(names[i * 2 % len(names)] for i in range(16)), image_size=image_size)
    assert measure.measured(create_model(g), g) == counting.analytic(g)


def test_dilated_2x2_keeps_spatial_size():
    g = Genotype.uniform("wrn-16-1", "Conv2x2")
    logits, points = create_model(g)(torch.zeros(2, 3, 32, 32))
    assert [p.shape[-1] for p in points] == [32, 16, 8]
    assert counting.analytic(g) == measure.measured(create_model(g), g)


def test_resnet18_half_width_comparator():
    """Table 3's ResNet-18-0.5: every width halved, stem included; the built net's measured counts equal the
    analytic ones, and its state dict has ResNet-18's keys at half the channels."""
    g = Genotype.uniform("resnet18-0.5", "Conv")
    net, full = create_model(g), create_model(Genotype.uniform("resnet18", "Conv"))
    assert measure.measured(net, g) == counting.analytic(g)
    assert (counting.analytic(g).params, counting.analytic(g).macs) == (3_055_880, 483_149_824)
    half, whole = net.state_dict(), full.state_dict()
    assert list(half) == list(whole)
    assert half["conv1.weight"].shape == (32, 3, 7, 7) and half["fc.weight"].shape == (1000, 256)
    assert half["layer4.1.conv2.weight"].shape == (256, 256, 3, 3)
