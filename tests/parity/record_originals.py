"""Record the original implementations' zero-cost proxy scores on one fixed tiny network (run by hand).

    .venv/bin/python tests/parity/record_originals.py --originals DIR

writes tests/parity/originals.json: per proxy, the original code's value on the fixture, its repository,
commit and file, and a note on where its convention differs from ours. tests/test_parity.py compares
`blockswap`'s proxies against these values (and, with BLOCKSWAP_ORIGINALS=DIR set, recomputes them with
the functions of this file and checks the recording).

The fixture (tests/parity/fixture.pt, made on the first run and reused afterwards): a WRN-10-1 with one
`Conv`, one `DConvA2` and one `G2B2` block for 3×32×32 inputs and 10 classes, initialised under
torch.manual_seed(0) (fresh: BN running stats 0/1), and a batch of 16 seeded Gaussian images with labels
0,1,2,3,0,1,... (four classes of four images).

DIR layout: one folder per repository, named as below, each a git checkout (its commit is read with
`git rev-parse HEAD`) or an extracted tree with a file COMMIT holding the commit's SHA. Only these paths
are read:

    DIR/NASLib/naslib/predictors/utils/pruners/            automl/NASLib (NAS-Bench-Suite-Zero's measures)
    DIR/ZiCo/ZeroShotProxy/compute_zico.py                 SLDGroup/ZiCo
    DIR/MeCo/zero-cost-nas/foresight/                      HamsterMimi/MeCo (NAS-Bench-Suite-Zero protocol)
    DIR/MeCo/correlation/foresight/                        HamsterMimi/MeCo (the paper's correlation runs)
    DIR/ZenNAS/ZeroShotProxy/compute_zen_score.py          idstcv/ZenNAS
    DIR/EPE-NAS/search.py                                  VascoLopes/EPE-NAS

The recorded commits (see originals.json) and a way to get them:

    DIR=/tmp/originals
    for spec in automl/NASLib@0b51bc184622a98317ea1048b2daf7dd1150f243 \
                SLDGroup/ZiCo@b0fec65923a90e84501593f675b1e2f422d79e3d \
                HamsterMimi/MeCo@0d830dd2f639f9d1ba3b5831a65df768d70fc93b \
                idstcv/ZenNAS@d1d617e0352733d39890fb64ea758f9c85b28c1a \
                VascoLopes/EPE-NAS@22bd3410a7fc901661daf923c93b40de1b5de2c3; do
        repo=${spec%@*}; sha=${spec#*@}; name=${repo#*/}
        git clone --filter=blob:none --no-checkout https://github.com/$repo "$DIR/$name"
        git -C "$DIR/$name" checkout "$sha" -- .   # or a sparse checkout of the paths above
    done

or, from bare mirrors (GIT_DIR=<mirror of owner/name>), only the paths needed:

    git --git-dir=$GIT_DIR archive $sha naslib/predictors/utils/pruners | tar -x -C $DIR/NASLib
    git --git-dir=$GIT_DIR archive $sha ZeroShotProxy | tar -x -C $DIR/ZiCo       # ZiCo, and ZenNAS likewise
    git --git-dir=$GIT_DIR archive $sha zero-cost-nas/foresight correlation/foresight | tar -x -C $DIR/MeCo
    git --git-dir=$GIT_DIR archive $sha search.py | tar -x -C $DIR/EPE-NAS
    echo $sha > $DIR/<name>/COMMIT

The originals are imported from DIR at run time, never copied here. Package-level imports that would pull
in unrelated dependencies are replaced by empty modules in sys.modules while they load: NASLib's
`naslib.predictors` (every predictor), `naslib.predictors.utils.models` (NAS-Bench model code) and
`...measures.model_stats` (tensorwatch); MeCo's `foresight` (GitPython, for its version string) and
`foresight.dataset` (dataset loaders); ZiCo's and ZenNAS's `global_utils` (distutils) and `ModelLoader`
(their model zoo); EPE-NAS's search.py is a script (argparse, NAS-Bench-201 API and datasets at module
level), so only its functions are taken from its source. None of the replaced modules is used by the
measures called.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import hashlib
import importlib
import importlib.util
import json
import math
import subprocess
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from blockswap.core.genotype import Genotype
from blockswap.nn.models import create_model

HERE = Path(__file__).resolve().parent
FIXTURE = HERE / "fixture.pt"
RECORD = HERE / "originals.json"

GENOTYPE = dict(model="wrn-10-1", blocks=["Conv", "DConvA2", "G2B2"], in_channels=3, num_classes=10,
                image_size=32)
BATCH = 16
CLASSES_IN_BATCH = 4
ZEN_SEED = 0  # our zen draws its Gaussians from a generator seeded 0; the originals use the global RNG
MECO_RANDOM_SHAPE = (1, 3, 64, 64)  # the random image MeCo's correlation/ code draws for each network

REPOS = {"NASLib": "automl/NASLib", "ZiCo": "SLDGroup/ZiCo", "MeCo": "HamsterMimi/MeCo",
         "ZenNAS": "idstcv/ZenNAS", "EPE-NAS": "VascoLopes/EPE-NAS"}
NASLIB_PRUNERS = "naslib/predictors/utils/pruners"


# ------------------------------------------------------------------------------------------------ fixture
def make_fixture() -> dict:
    """The seeded network (its state dict) and batch."""
    genotype = Genotype.from_dict(GENOTYPE)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = create_model(genotype)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, genotype.in_channels, genotype.image_size, genotype.image_size, generator=gen)
    y = torch.arange(BATCH) % CLASSES_IN_BATCH
    return {"genotype": genotype.to_dict(), "state_dict": net.state_dict(), "x": x, "y": y}


def load_fixture(path: Path = FIXTURE) -> dict:
    return torch.load(path, weights_only=True)


def fixture_sha256(path: Path = FIXTURE) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def genotype_of(fixture: dict) -> Genotype:
    return Genotype.from_dict(fixture["genotype"])


def build_net(fixture: dict) -> nn.Module:
    """Our network with the fixture's weights and running stats, in train mode (as every proxy takes it)."""
    net = create_model(genotype_of(fixture))
    net.load_state_dict(fixture["state_dict"])
    return net.train()


def batch_of(fixture: dict) -> tuple[torch.Tensor, torch.Tensor]:
    return fixture["x"].clone(), fixture["y"].clone()


# ----------------------------------------------------------------------------------------------- adapters
class Logits(nn.Module):
    """Our network as the originals call it: `forward` returns the logits alone (ours returns a tuple), and
    the pre-pooling feature map the Zen-score needs, under ZenNAS's and NASLib's names."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)[0]

    def forward_pre_GAP(self, x):  # ZenNAS's name
        feats = []
        pool = getattr(self.net, self.net.pool_name)
        handle = pool.register_forward_hook(lambda m, i, o: feats.append(i[0]))
        try:
            self.net(x)
        finally:
            handle.remove()
        return feats[0]

    def forward_before_global_avg_pool(self, x):  # NASLib's name
        return self.forward_pre_GAP(x)


class FeaturesLogits(Logits):
    """EPE-NAS's NAS-Bench-201 networks return (features, logits); it reads only the logits."""

    def forward(self, x):
        return None, self.net(x)[0]


class CpuLogits(Logits):
    """ZiCo's loop moves the network and each batch to CUDA; here both stay on the CPU."""

    def cuda(self, device=None):
        return self


class OnCpu:
    """A batch tensor as ZiCo's loop takes it (`batch[0].cuda()`), kept on the CPU."""

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor

    def cuda(self):
        return self.tensor


def layer_names(adapter: Logits, types_=(nn.Conv2d, nn.Linear)) -> list[str]:
    """Our names (as in our network's named_modules) of the adapter's modules of `types_`, in module order."""
    return [_our_name(n) for n, m in adapter.named_modules() if isinstance(m, types_)]


def _our_name(adapter_name: str) -> str:
    return adapter_name.removeprefix("net.") if adapter_name != "net" else ""


# ---------------------------------------------------------------------------------------- loading originals
def commit_of(checkout: Path) -> str:
    """The checkout's commit: `git rev-parse HEAD` of a checkout, else its COMMIT file, else "unknown"."""
    if (checkout / ".git").exists():
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            return subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True,
                                  text=True, check=True).stdout.strip()
    marker = checkout / "COMMIT"
    return marker.read_text().strip() if marker.exists() else "unknown"


def _stub(name: str, path: Path | None = None, **attrs) -> types.ModuleType:
    """An empty module (a package without its __init__ if `path` is given) in place of `name`."""
    mod = types.ModuleType(name)
    if path is not None:
        mod.__path__ = [str(path)]
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    return mod


@contextlib.contextmanager
def _isolated_imports(*prefixes: str):
    """The modules named `prefixes` (and their submodules) are taken out of sys.modules before and after the
    block, and sys.path is restored, so neither stubs nor the originals' modules leak into the caller."""
    def clear():
        for name in [n for n in sys.modules if any(n == p or n.startswith(p + ".") for p in prefixes)]:
            del sys.modules[name]

    clear()
    path = list(sys.path)
    try:
        yield
    finally:
        clear()
        sys.path[:] = path


def _from_file(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _no_tensorwatch(*args, **kwargs):
    raise RuntimeError("NASLib's flops/params need tensorwatch, which is not loaded")


def load_naslib(root: Path) -> types.SimpleNamespace:
    """NASLib's pruners: `predictive` (find_measures) and the `measures` package, all measures loaded."""
    with _isolated_imports("naslib"):
        _stub("naslib", root / "naslib")
        _stub("naslib.predictors", root / "naslib/predictors")
        _stub("naslib.predictors.utils", root / "naslib/predictors/utils")
        _stub("naslib.predictors.utils.models")
        _stub("naslib.predictors.utils.pruners.measures.model_stats", get_model_stats=_no_tensorwatch)
        measures = importlib.import_module("naslib.predictors.utils.pruners.measures")
        predictive = importlib.import_module("naslib.predictors.utils.pruners.predictive")
    return types.SimpleNamespace(predictive=predictive, measures=measures, zen=measures.zen)


def load_meco(root: Path, variant: str) -> types.ModuleType:
    """MeCo's `meco` measure module of `variant` ("zero-cost-nas" or "correlation"), its package's measures
    loaded as its __init__ loads them."""
    base = root / variant / "foresight"
    with _isolated_imports("foresight"):
        _stub("foresight", base)
        _stub("foresight.dataset", get_cifar_dataloaders=None)
        importlib.import_module("foresight.pruners.measures")
        return sys.modules["foresight.pruners.measures.meco"]


def load_zero_shot_proxy(root: Path, filename: str, alias: str) -> types.ModuleType:
    """ZiCo's or ZenNAS's ZeroShotProxy/`filename` (a module that imports its repository's global_utils and
    ModelLoader at top level)."""
    with _isolated_imports("global_utils", "ModelLoader", alias):
        _stub("global_utils")
        _stub("ModelLoader")
        return _from_file(alias, root / "ZeroShotProxy" / filename)


def load_epe_nas(root: Path) -> types.SimpleNamespace:
    """The functions of EPE-NAS's search.py (a script; its module-level code parses arguments and loads
    NAS-Bench-201), executed from its source without the script around them."""
    source = (root / "search.py").read_text()
    tree = ast.parse(source)
    wanted = {"get_batch_jacobian", "eval_score_perclass"}
    body = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in wanted]
    namespace = {"np": np, "torch": torch}
    exec(compile(ast.Module(body=body, type_ignores=[]), str(root / "search.py"), "exec"), namespace)
    return types.SimpleNamespace(**{k: namespace[k] for k in wanted})


# -------------------------------------------------------------------------------------------- measurements
NASLIB_NOTES = {
    "fisher": "NASLib's Fisher is per output channel of every conv/linear layer, Δ_k = ½·mean_n (Σ_hw a·∂L/∂a)², "
              "a the layer's output; reshape_elements broadcasts each channel's Δ over the channel's fan-in "
              "(numel(weight[k])), so sum_arr sums Δ_k × fan-in over all conv and linear layers. Ours is "
              "BlockSwap's: Δ at each block's probe (the branch output, the output of the branch's last conv "
              "here), each channel once. `layers` holds each layer's sum_arr term; the test divides the probe "
              "convs' terms by their fan-in and sums them.",
    "grad_norm": "Σ over conv/linear layers of ‖∂L/∂W‖₂ (sum_arr of per-layer norms), one minibatch: ours with "
                 "k = 1 (the k-step sum has one term).",
    "snip": "Σ|∂L/∂mask| = Σ|W ⊙ ∂L/∂W| over conv/linear weights (sum_arr), as ours.",
    "l2_norm": "Σ over conv/linear layers of ‖W‖₂ (sum_arr), as ours.",
    "plain": "Σ W ⊙ ∂L/∂W over conv/linear weights, signed (sum_arr), as ours.",
    "grasp": "Σ −W ⊙ Hg over conv/linear weights (sum_arr; the sign NASLib adds), as ours.",
    "synflow": "NASLib's `synflow` (bn=False) replaces every BN's forward by the identity. Ours keeps BN in eval "
               "mode with running stats reset (mean 0, var 1), i.e. |γ|·x/√(1+ε) + |β|: the convention of SynFlow's "
               "own code (ganguli-lab/Synaptic-Flow@9dfa57aa, prune.py puts the model in eval mode before scoring "
               "and makes every state_dict entry |·|). On the fixture (fresh: γ = 1, β = 0) the two coincide for "
               "ε = 0; the test sets ε = 0 on our network. Both float64, |θ| for every parameter, input all ones "
               "of one image.",
    "nwot": "NASWOT (v2 of Mellor et al.): log|K|, K accumulated from the binary codes of every module whose "
            "type name contains 'ReLU' (our nn.ReLU and InnerReLU), code = input > 0 (⇔ output > 0), as ours.",
    "jacov": "Mellor et al. v1: −Σ log(λ+k) + 1/(λ+k) over the eigenvalues (np.linalg.eig) of the correlation "
             "of the input gradients of Σ logits, k = 1e-5, as ours (eigvalsh).",
    "epe_nas": "EPE-NAS as in the authors' repository: n_classes = 10 ≤ 100, so Σ_c |Σ log(|corr_c| + k)|. A "
               "class with one image would add log(1+k) ≈ 1e-5 in NASLib (ours leaves it out); the fixture has "
               "four images per class.",
    "zen": "Zen-score as ZenNAS's (NASLib's zen.py is a copy). Comparable setup: its Gaussian re-initialisation "
           "of the weights (network_weight_gaussian_init: conv/linear N(0,1), BN γ=1 β=0) is disabled, so it "
           "scores the fixture's weights as ours does, and torch.manual_seed(0) before the call makes its x, ε "
           "(global RNG) those of ours (a generator seeded 0). Its log Δ term is then ours. Its BN term differs: "
           "Σ log √mean(running_var), read after its two train-mode passes (x, then x + 0.01ε), i.e. with "
           "momentum 0.1 and fresh stats running_var = 0.81 + 0.09·var_unbiased(x) + 0.1·var_unbiased(x+αε) "
           "per channel; ours takes the mean over channels of the biased batch variance of the x pass (the "
           "paper's mini-batch σ). `bn_term` is the original's BN term; the test compares value − bn_term with "
           "ours minus our BN term, and checks bn_term against that running-var formula. float32.",
}


NASLIB_DTYPES = {
    None: "float32: per-layer float32 arrays, summed in float32 by sum_arr",
    "synflow": "float64: NASLib casts its copy of the network to double",
    "naswot": "float32 forward and code counts (exact integers), float64 numpy slogdet",
    "jacov": "float32 Jacobians, float64 numpy correlation and eigenvalues",
    "epe_nas": "float32 Jacobians, float64 numpy correlations",
    "zen": "float32",
}


def _naslib_measure(naslib, fixture: dict, name: str) -> dict:
    """One measure through NASLib's own entry point (find_measures: prunable copy, measure, sum_arr)."""
    net = Logits(build_net(fixture))
    loader = [batch_of(fixture)]
    info = ("random", 1, genotype_of(fixture).num_classes)
    cpu = torch.device("cpu")
    arrays = naslib.predictive.find_measures_arrays(net, loader, info, cpu, measure_names=[name],
                                                    loss_fn=F.cross_entropy)
    value = naslib.predictive.find_measures(net, loader, info, cpu, F.cross_entropy, measure_names=[name],
                                            measures_arr=arrays)
    entry = {"value": float(value)}
    if isinstance(arrays[name], list):  # per-layer arrays, in module order of the conv/linear layers
        entry["layers"] = {n: float(torch.sum(a.detach())) for n, a in zip(layer_names(net), arrays[name])}
    return entry


def _bn_term(net: nn.Module) -> float:
    """Σ over BN layers of log √(mean running_var): the originals' BN term, read from the net they measured."""
    total = torch.zeros(())
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            total = total + torch.log(torch.sqrt(torch.mean(m.running_var)))
    return float(total)


def _naslib_zen(naslib, fixture: dict) -> dict:
    measured = []

    def keep_weights(net):  # in place of the Gaussian re-initialisation; keeps the copy NASLib measures
        measured.append(net)
        return net

    naslib.zen.network_weight_gaussian_init = keep_weights
    net = Logits(build_net(fixture))
    loader = [batch_of(fixture)]
    info = ("random", 1, genotype_of(fixture).num_classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ZEN_SEED)
        value = naslib.predictive.find_measures(net, loader, info, torch.device("cpu"), F.cross_entropy,
                                                measure_names=["zen"])
    (copy_measured,) = measured
    return {"value": float(value), "bn_term": _bn_term(copy_measured)}


def naslib_entries(root: Path, fixture: dict) -> dict:
    naslib = load_naslib(root)
    commit = commit_of(root)
    entries = {}
    for key, proxy in (("fisher", "fisher"), ("grad_norm", "grad_norm"), ("snip", "snip"), ("l2_norm", "l2_norm"),
                       ("plain", "plain"), ("grasp", "grasp"), ("synflow", "synflow"), ("naswot", "nwot"),
                       ("jacov", "jacov"), ("epe_nas", "epe_nas")):
        entries[key] = {"proxy": key, **_naslib_measure(naslib, fixture, proxy)}
        entries[key].update(file=f"{NASLIB_PRUNERS}/measures/{proxy}.py",
                            call=f"predictive.find_measures(measure_names=[{proxy!r}])", note=NASLIB_NOTES[proxy])
    entries["zen"] = {"proxy": "zen", **_naslib_zen(naslib, fixture), "file": f"{NASLIB_PRUNERS}/measures/zen.py",
                      "call": "predictive.find_measures(measure_names=['zen']), re-initialisation disabled",
                      "note": NASLIB_NOTES["zen"]}
    for key, e in entries.items():
        e.update(repo=REPOS["NASLib"], commit=commit, dtype=NASLIB_DTYPES.get(key, NASLIB_DTYPES[None]))
    return entries


def zennas_entry(root: Path, fixture: dict) -> dict:
    mod = load_zero_shot_proxy(root, "compute_zen_score.py", "_zennas_compute_zen_score")
    mod.network_weight_gaussian_init = lambda net: net  # the comparable setup: score the fixture's weights
    net = Logits(build_net(fixture))
    g = genotype_of(fixture)
    if tuple(fixture["x"].shape[1:]) != (3, g.image_size, g.image_size):
        raise ValueError("ZenNAS draws 3-channel square inputs: the fixture must be 3×S×S")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ZEN_SEED)
        info = mod.compute_nas_score(None, net, mixup_gamma=0.01, resolution=g.image_size,
                                     batch_size=len(fixture["x"]), repeat=1, fp16=False)
    return {"proxy": "zen", "value": info["avg_nas_score"], "bn_term": _bn_term(net),
            "repo": REPOS["ZenNAS"], "commit": commit_of(root), "file": "ZeroShotProxy/compute_zen_score.py",
            "call": "compute_nas_score(gpu=None, mixup_gamma=0.01, resolution=32, batch_size=16, repeat=1), "
                    "re-initialisation disabled", "dtype": "float32",
            "note": "The Zen-score's own repository; same computation as NASLib's zen.py (see the `zen` entry): "
                    "its input is always 3×resolution² Gaussian noise of the given batch size."}


def zico_entry(root: Path, fixture: dict) -> dict:
    mod = load_zero_shot_proxy(root, "compute_zico.py", "_zico_compute_zico")
    x, y = batch_of(fixture)
    half = len(x) // 2
    loader = [(OnCpu(x[:half]), OnCpu(y[:half])), (OnCpu(x[half:]), OnCpu(y[half:]))]
    value = mod.getzico(CpuLogits(build_net(fixture)), loader, nn.CrossEntropyLoss())
    return {"proxy": "zico", "value": float(value), "repo": REPOS["ZiCo"], "commit": commit_of(root),
            "file": "ZeroShotProxy/compute_zico.py", "call": "getzico(net, [first half, second half], "
            "nn.CrossEntropyLoss())", "dtype": "float32 (numpy reductions in float32)",
            "note": "ZiCo over two minibatches, the fixture's halves (ours splits its one minibatch the same "
                    "way): Σ over conv/linear layers of log Σ mean|g|/std(g), population std (np.std), weights "
                    "with std 0 left out, a layer whose sum is 0 skipped. Its `.cuda()` calls are kept on the "
                    "CPU."}


def _meco_per_module(compute, fixture: dict, inputs: torch.Tensor, reseed: int | None) -> tuple[float, dict]:
    """The original's score with its hooks on every module (its protocol), and on each module alone.

    The adapter stands for our network (it returns the logits our network returns first), so our network's
    own module, whose output is a tuple, is left out; module names are ours ("" is the network)."""
    base = Logits(build_net(fixture))
    targets = torch.zeros(len(inputs), dtype=torch.long)

    def run(names):
        net = copy.deepcopy(base)  # the original leaves its hooks on the network it is given
        chosen = [(n, m) for n, m in net.named_modules() if n in names]
        net.named_modules = lambda *a, **k: iter(chosen)
        with torch.random.fork_rng(devices=[]):
            if reseed is not None:
                torch.manual_seed(reseed)
            value = compute(net, inputs.clone(), targets)
        if isinstance(value, tuple):  # its error path returns (nan, None)
            raise RuntimeError(f"MeCo failed on modules {sorted(names)}")
        return float(value)

    names = [n for n, m in base.named_modules() if m is not base.net]
    per_module = {}
    for name in names:
        v = run({name})
        per_module[_our_name(name)] = None if math.isnan(v) else v
    return run(set(names)), per_module


def meco_entries(root: Path, fixture: dict) -> dict:
    commit = commit_of(root)
    zc = load_meco(root, "zero-cost-nas")
    x, _ = batch_of(fixture)
    value, layers = _meco_per_module(zc.compute_meco, fixture, x[:1], reseed=None)
    entries = {"meco": {
        "proxy": "meco", "value": value, "layers": layers, "repo": REPOS["MeCo"], "commit": commit,
        "file": "zero-cost-nas/foresight/pruners/measures/meco.py", "dtype": "float32",
        "call": "compute_meco(net, x[:1], y[:1]) (its measure() registration copies the net; called directly on "
                "a copy here)",
        "note": "MeCo hooks every module of the network (containers, BN, ReLU, probes, pooling, fc and the "
                "network itself) and sums the smallest eigenvalue (torch.linalg.eig, real part) of the "
                "channel correlation of each module's output for the first image, NaN/inf correlations set to "
                "0. Ours sums over the Conv2d layers only: `layers` holds the original's term of each module "
                "(null: NaN, left out by the original), the test sums the Conv2d ones. Given the one image "
                "x[:1] as ours forwards (a batch would change train-mode BN statistics: the paper uses one "
                "image). float32 correlations and eigenvalues (ours float64)."}}
    cor = load_meco(root, "correlation")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        random_image = torch.randn(MECO_RANDOM_SHAPE)
    value, layers = _meco_per_module(cor.compute_meco, fixture, random_image, reseed=0)
    entries["meco_random_input"] = {
        "proxy": "meco", "value": value, "layers": layers, "repo": REPOS["MeCo"], "commit": commit,
        "file": "correlation/foresight/pruners/measures/meco.py", "dtype": "float32",
        "input": f"torch.randn{MECO_RANDOM_SHAPE} after torch.manual_seed(0)",
        "call": "compute_meco(net, ...) with torch.manual_seed(0) before it",
        "note": "The paper's protocol: the measure ignores the batch and draws one random 1×3×64×64 image "
                "(torch.randn, global RNG; seeded 0 here). Ours on the same image gives the comparable value "
                "(our network pools globally, so 64×64 runs). Layer set as in the `meco` entry."}
    return entries


def epe_nas_entry(root: Path, fixture: dict) -> dict:
    epe = load_epe_nas(root)
    x, y = batch_of(fixture)
    jacob, target = epe.get_batch_jacobian(FeaturesLogits(build_net(fixture)), x, y, None, None)
    value = epe.eval_score_perclass(jacob.reshape(len(x), -1).cpu().numpy(), [target.cpu().numpy()])
    return {"proxy": "epe_nas", "value": float(value), "repo": REPOS["EPE-NAS"], "commit": commit_of(root),
            "file": "search.py", "call": "get_batch_jacobian + eval_score_perclass(jacobs, [labels]) "
            "(n_classes default 10)", "dtype": "float32 Jacobians, float64 numpy correlations",
            "note": "The authors' EPE-NAS: Σ_c |Σ log(|corr_c| + 1e-5)| for ≤ 100 classes, as ours and NASLib's "
                    "copy. Its networks return (features, logits); the adapter returns (None, logits)."}


NOT_RUN = {
    "params": "NASLib's `params` is tensorwatch's model_stats(...).parameters / 1e6 (megaparameters); tensorwatch "
              "(0.9.1, 2020) is not installed here, so the original is not run. The test checks ours against "
              "the formula: the number of parameters of the built network (analytic, from the genotype).",
    "flops": "NASLib's `flops` is tensorwatch's model_stats(...).Flops / 1e6 for a one-image input; not run "
             "(tensorwatch not installed). Ours counts multiply-accumulates; the test checks ours against the "
             "formula Σ_conv H_out·W_out·numel(W) + numel(W_fc) on the built network.",
}


# The originals' own warnings, known and harmless here: NASLib's Fisher registers a (deprecated) non-full
# backward hook on an identity, whose grad_output it reads; MeCo correlates modules whose output has one value
# per channel (pooling, fc), which it then zeroes as NaN.
KNOWN_WARNINGS = (r"Using a non-full backward hook when the forward contains multiple autograd Nodes",
                  r"cov\(\): degrees of freedom is <= 0")


def record(originals: Path, fixture: dict) -> dict:
    """{key: entry} of every recorded original on the fixture."""
    with warnings.catch_warnings():
        for message in KNOWN_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        return _record(Path(originals), fixture)


def _record(originals: Path, fixture: dict) -> dict:
    entries = {}
    entries.update(naslib_entries(originals / "NASLib", fixture))
    entries["zen_zennas"] = zennas_entry(originals / "ZenNAS", fixture)
    entries["zico"] = zico_entry(originals / "ZiCo", fixture)
    entries.update(meco_entries(originals / "MeCo", fixture))
    entries["epe_nas_original"] = epe_nas_entry(originals / "EPE-NAS", fixture)
    for key, entry in entries.items():
        if not math.isfinite(entry["value"]):
            raise RuntimeError(f"{key}: the original gave {entry['value']}")
    for key, note in NOT_RUN.items():
        entries[key] = {"proxy": key, "value": None, "repo": REPOS["NASLib"], "commit": commit_of(originals / "NASLib"),
                        "file": f"{NASLIB_PRUNERS}/predictive.py", "call": f"find_measures(measure_names=[{key!r}])",
                        "note": note}
    return entries


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--originals", required=True, type=Path, help="folder of the original checkouts")
    parser.add_argument("--fixture", type=Path, default=FIXTURE)
    parser.add_argument("-o", "--output", type=Path, default=RECORD)
    args = parser.parse_args(argv)
    if not args.fixture.exists():
        torch.save(make_fixture(), args.fixture)
        print(f"wrote {args.fixture}")
    fixture = load_fixture(args.fixture)
    torch.set_num_threads(1)  # as the test reruns it
    entries = record(args.originals, fixture)
    out = {
        "fixture": {"file": args.fixture.name, "sha256": fixture_sha256(args.fixture), "genotype": fixture["genotype"],
                    "batch": f"{tuple(fixture['x'].shape)} Gaussian, labels arange({BATCH}) % {CLASSES_IN_BATCH}",
                    "mode": "train (BN batch statistics) unless a note says otherwise"},
        "torch": torch.__version__, "numpy": np.__version__,
        "proxies": entries,
    }
    args.output.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {args.output}")
    for key, e in entries.items():
        print(f"{key:18s} {e['value']!r:>24}  {e['repo']}@{e['commit'][:10]}  {e['file']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
