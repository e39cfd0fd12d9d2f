"""A student that stands alone: eval-mode loading."""

import pytest
import torch

from blockswap.checkpoint import load_model, save
from blockswap.genotype import Genotype
from blockswap.models import create_model

pytestmark = pytest.mark.usefixtures("one_thread")


def checkpoint(path, genotype, seed=0):
    """A checkpoint of `genotype` with random weights, the classifier's too (initialised to zero), and batch-norm
    statistics unlike a fresh net's (so that train and eval mode compute different logits)."""
    torch.manual_seed(seed)
    net = create_model(genotype)
    torch.nn.init.normal_(net.fc.weight, std=0.5)
    for name, t in net.state_dict().items():
        if name.endswith("running_mean"):
            t.copy_(torch.randn_like(t) * 0.1)
        elif name.endswith("running_var"):
            t.copy_(torch.rand_like(t) + 0.5)
    save({"genotype": genotype.to_dict(), "config": {"dataset": "folder"}, "state_dict": net.state_dict(),
          "metrics": {}, "provenance": {}}, path)
    return net


GRAY = Genotype("wrn-10-1", ("Conv", "G2B2", "DConv"), in_channels=1, num_classes=3, image_size=28)


def test_load_model_returns_the_net_in_eval_mode(tmp_path):
    net = checkpoint(tmp_path / "m.pt", GRAY)
    loaded, _ = load_model(tmp_path / "m.pt")
    assert not any(m.training for m in loaded.modules())
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x)[0], net.eval()(x)[0]) and not torch.equal(net.train()(x)[0], loaded(x)[0])
