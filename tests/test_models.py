"""Model registry, block registry, shapes and genotypes."""

import json

import pytest
import torch

from blockswap.core.arch import BottleneckResNet, get_architecture, model_names
from blockswap.core.blocktypes import (
    BLOCK_TYPES,
    BLOCKSWAP_TYPES,
    PAPER_TYPES,
    STRUCTURED_TYPES,
    candidate_set,
    get_block,
)
from blockswap.core.errors import BlockswapError
from blockswap.core.genotype import Genotype, import_legacy_csv, load
from blockswap.nn.blocks import build_module
from blockswap.nn.models import create_model


@pytest.mark.parametrize("name", model_names())
def test_every_registered_model_builds_and_runs(name):
    arch = get_architecture(name)
    size = 64 if "resnet" in name else arch.default_image_size
    g = Genotype.uniform(name, "Conv", image_size=size)
    logits, points = create_model(g)(torch.randn(2, 3, size, size))
    assert logits.shape == (2, arch.default_num_classes)
    assert len(points) == (4 if "resnet" in name else 3)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
@pytest.mark.parametrize("name", model_names())
def test_every_registered_model_scripts_to_the_same_numbers(name):
    """A deployment's first step: torch.jit.script compiles the net, mixed blocks included, and computes
    exactly what the eager net computes."""
    size = 32 if "resnet" in name else 16
    bottleneck = isinstance(get_architecture(name), BottleneckResNet)
    blocks = ("Conv", "NeckA4B2", "DConv", "NeckD") * 9 if bottleneck else ("Conv", "G2B2", "DConv", "MBConv6") * 5
    g = Genotype(name, blocks[:len(Genotype.uniform(name, "Conv").blocks)], in_channels=1, num_classes=3,
                 image_size=size)
    torch.manual_seed(0)
    net = create_model(g).eval()
    x = torch.randn(2, 1, size, size)
    (logits, points), (s_logits, s_points) = net(x), torch.jit.script(net)(x)
    assert torch.equal(logits, s_logits) and all(torch.equal(a, b) for a, b in zip(points, s_points))
    assert len(s_points) == len(points)


def test_wrn_shapes_and_block_count():
    g = Genotype.uniform("wrn-40-2", "Conv")
    assert len(g.blocks) == 18
    net = create_model(g)
    assert len(net.blocks) == 18
    logits, points = net(torch.randn(3, 3, 32, 32))
    assert [tuple(p.shape) for p in points] == [(3, 32, 32, 32), (3, 64, 16, 16), (3, 128, 8, 8)]
    assert len(Genotype.uniform("resnet34", "Conv").blocks) == 16
    assert len(Genotype.uniform("resnet18", "Conv").blocks) == 8


def test_fashion_mnist_shaped_wrn():
    g = Genotype.uniform("wrn-16-1", "G2B2", in_channels=1, num_classes=10, image_size=28)
    logits, points = create_model(g)(torch.randn(4, 1, 28, 28))
    assert logits.shape == (4, 10)
    assert [p.shape[-1] for p in points] == [28, 14, 7]


def test_wrn_init_follows_the_paper():
    net = create_model(Genotype.uniform("wrn-16-2", "Conv"))
    conv = net.block2[1].branch[0]  # 3×3, 64→64
    expected_std = (2 / (9 * 64)) ** 0.5
    assert abs(conv.weight.std().item() - expected_std) / expected_std < 0.05
    assert torch.all(net.block1[0].bn1.weight == 1) and torch.all(net.block1[0].bn1.bias == 0)
    assert torch.all(net.fc.bias == 0)


@pytest.mark.parametrize("name", list(dict.fromkeys(list(BLOCK_TYPES) + STRUCTURED_TYPES)))
def test_every_block_type_builds_with_right_output(name):
    """Walk the block registry: each type maps (N, i, H, W) to (N, o, H/stride, W/stride)."""
    btype = get_block(name)
    for cin, cout, stride in ((32, 32, 1), (32, 64, 2)):
        if not btype.is_valid(cin, cout):
            continue
        m = build_module(btype, cin, cout, stride)
        y = m(torch.randn(2, cin, 16, 16))
        assert y.shape == (2, cout, 16 // stride, 16 // stride)
        assert sum(p.numel() for p in m.parameters()) == btype.params(cin, cout)


def test_group_conventions():
    # G = channels per group, A = absolute number of groups (the BlockSwap code's naming trap).
    conv = build_module(get_block("DConvG4"), 64, 64, 1)[0]
    assert conv.groups == 16
    conv = build_module(get_block("DConvA4"), 64, 64, 1)[0]
    assert conv.groups == 4
    bottleneck = build_module(get_block("G2B4"), 64, 64, 1)
    assert bottleneck[3].groups == 8  # m = 16, 2 channels per group


def test_invalid_type_at_width_is_refused():
    assert not get_block("A16B2").is_valid(16, 16)  # m = 8 cannot hold 16 groups
    with pytest.raises(BlockswapError, match="cannot be used at block 0"):
        Genotype("wrn-16-1", ("A16B2",) + ("Conv",) * 5)


def test_bottleneck_middles_narrow_and_group_the_3x3():
    """A bottleneck block's middle types: the 1×1s narrowed with the 3×3, its groups as named; per-conv types
    replace the 3×3 alone."""
    g = Genotype("resnet50", ("NeckA4B2", "NeckD", "DConv", "NeckG4") + ("Conv",) * 12, num_classes=3, image_size=32)
    net = create_model(g)
    first, depthwise, separable, grouped = net.layer1[0], net.layer1[1], net.layer1[2], net.layer2[0]
    assert (first.conv1.out_channels, first.conv2.groups, first.conv3.in_channels) == (32, 4, 32)
    assert depthwise.conv2.groups == 64 and grouped.conv2.groups == 128 // 4
    assert isinstance(separable.conv2, torch.nn.Sequential) and separable.conv3.in_channels == 64
    assert net(torch.randn(2, 3, 32, 32))[0].shape == (2, 3)


def test_a_bottleneck_blocks_probe_reads_its_branch_output():
    """The Fisher probe sits on bn3's output, before the residual addition (BlockSwap §3.3), in every block."""
    from blockswap.search.fisher import fisher_per_block

    torch.manual_seed(0)
    net = create_model(Genotype("resnet50", ("NeckB2", "DConv") * 8, num_classes=3, image_size=32)).train()
    seen = {}
    for i, block in enumerate(net.blocks):
        block.bn3.register_forward_hook(lambda m, inp, out, i=i: seen.setdefault(("bn3", i), out))
        block.probe.register_forward_hook(lambda m, inp, out, i=i: seen.setdefault(("probe", i), inp[0]))
    net(torch.randn(4, 3, 32, 32))
    assert all(seen[("probe", i)] is seen[("bn3", i)] for i in range(16))
    fisher = fisher_per_block(net, [(torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0]))])
    assert fisher.shape == (16,) and bool((fisher > 0).all())


@pytest.mark.parametrize("model,block,words", [
    ("resnet18", "NeckB2", "'NeckB2' is a bottleneck-middle block type and resnet18 has basic blocks, which take "
                           "per-conv and whole-branch types; 'NeckB2' fits resnet50, resnet101, wide_resnet50_2"),
    ("wrn-16-1", "NeckA4", "wrn-16-1 has basic blocks"),
    ("resnet50", "ConvB2", "'ConvB2' is a whole-branch .* resnet50 has bottleneck blocks, which take per-conv and "
                           "bottleneck-middle types; 'ConvB2' fits resnet18"),
    ("resnet101", "MBConv6", "resnet101 has bottleneck blocks")])
def test_a_type_of_the_other_block_kind_is_refused_naming_the_model(model, block, words):
    with pytest.raises(BlockswapError, match=words):
        Genotype.uniform(model, block, image_size=32)
    with pytest.raises(BlockswapError, match=words):  # named by the user in a candidate list
        get_architecture(model).candidate_types(f"Conv,{block}")
    assert block not in get_architecture(model).candidate_types("all")  # a named set keeps the types that fit


def test_candidate_sets():
    assert len(BLOCKSWAP_TYPES) == 23 and len(set(BLOCKSWAP_TYPES)) == 23
    assert len(PAPER_TYPES) == 21 and "DConvB2" in PAPER_TYPES and "G2B4" not in PAPER_TYPES
    assert candidate_set("all") == list(BLOCK_TYPES)
    assert candidate_set("Conv,G2B2") == ["Conv", "G2B2"]
    with pytest.raises(BlockswapError, match="Did you mean 'blockswap'"):
        candidate_set("blokswap")


def test_genotype_errors_name_the_field(tmp_path):
    cases = [
        ({"model": "wrn-40-2", "blocks": ["Conv"] * 17}, "has 17 names but wrn-40-2 has 18"),
        ({"model": "wrn-40-2", "blocks": ["Conv"] * 17 + ["ConvB3"]}, "unknown block type 'ConvB3'.*Did you mean"),
        ({"model": "wrn-41-2", "blocks": []}, "depth must be 6n\\+4"),
        ({"model": "vgg16", "blocks": []}, "unknown model 'vgg16'"),
        ({"model": "wrn-16-1", "blocks": ["Conv"] * 6, "num_classes": 0}, "'num_classes' must be a positive"),
        ({"model": "wrn-16-1", "blocks": ["Conv"] * 6, "colour": 1}, "unknown field 'colour'"),
        ({"blocks": ["Conv"] * 6}, "missing field 'model'"),
    ]
    for d, message in cases:
        path = tmp_path / "g.json"
        path.write_text(json.dumps(d))
        with pytest.raises(BlockswapError, match=message):
            load(path)
    path.write_text("{not json")
    with pytest.raises(BlockswapError, match="not valid JSON"):
        load(path)


def test_genotype_json_round_trip(tmp_path):
    g = Genotype("wrn-16-1", ("Conv", "G2B2", "DConv", "ConvB2", "A2B2", "DConvA2"), in_channels=1,
                 image_size=28)
    path = tmp_path / "g.json"
    path.write_text(g.to_json())
    assert load(path) == g
    assert json.loads(path.read_text()) == {"model": "wrn-16-1", "in_channels": 1, "num_classes": 10,
                                            "image_size": 28, "blocks": list(g.blocks)}
    assert g.id == load(path).id and len(g.id) == 10


def test_legacy_csv_both_spacings(tmp_path):
    names = ["ConvB4", "Conv", "A16B2", "G8B2", "DConvA2", "G2B4"] * 3
    spaced = "[" + ", ".join(repr(n) for n in names) + "]"
    tight = "[" + ",".join(repr(n) for n in names) + "]"
    path = tmp_path / "legacy.csv"
    path.write_text(f',index,convs,fisher\n0,3,"{spaced}",1.5e-06\n1,7,"{tight}",2.0e-06\n')
    rows = import_legacy_csv(path, "wrn-40-2")
    assert [g.blocks for g, _ in rows] == [tuple(names)] * 2
    assert rows[0][1] == {"index": 3, "fisher": 1.5e-06}
    path.write_text(',index,convs,fisher\n0,0,"[\'Conv\', \'Conv\'",1\n')
    with pytest.raises(BlockswapError, match="line 2: 'convs' is not a list"):
        import_legacy_csv(path, "wrn-40-2")
    path.write_text("a,b\n1,2\n")
    with pytest.raises(BlockswapError, match="'convs' column"):
        import_legacy_csv(path, "wrn-40-2")
