"""Shared test helpers: Fashion-MNIST-format IDX files (synthetic, any size) and the repository root.

pytest's default "prepend" import mode puts tests/ on sys.path, so modules import these by name
(`from conftest import write_fashion`); the SLURM cluster fixture lives in conftest_slurm.py.
"""

import gzip
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from blockswap.core.datadirs import locate_fashion_mnist
from blockswap.core.errors import BlockswapError


@pytest.fixture(scope="module")
def one_thread():
    """Tiny nets gain nothing from intra-op threads, and spinning OpenMP threads stall on a busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


ROOT = Path(__file__).resolve().parents[1]


def write_jpeg(image, path, quality: int = 75) -> None:
    """uint8 C×H×W (a torch tensor) as a JPEG file, by Pillow."""
    from PIL import Image

    pixels = image.permute(1, 2, 0).numpy()
    Image.fromarray(pixels[..., 0] if image.shape[0] == 1 else pixels).save(path, format="JPEG", quality=quality)


def write_idx(path: Path, array: np.ndarray, compress=True) -> None:
    """An IDX file (big-endian dims, uint8 payload) as the Fashion-MNIST distribution has them."""
    raw = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def write_fashion(root: Path, n_train=7, n_test=3, seed=0) -> dict:
    """The four Fashion-MNIST files with random images and labels; returns {"train"/"t10k": (images, labels)}."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
        out[prefix] = (images, labels)
    return out


def python_for(user: str) -> str | None:
    """An interpreter `user` may run (the venv's may live under root's 0700 home)."""
    for python in (sys.executable, "/usr/bin/python3"):
        check = "import sys; assert sys.version_info >= (3, 11)"
        if subprocess.run(["runuser", "-u", user, "--", python, "-c", check], capture_output=True).returncode == 0:
            return python
    return None


def require_fashion_mnist() -> Path:
    """The real Fashion-MNIST folder; its absence fails the test (the test command fetches it first)."""
    try:
        return locate_fashion_mnist()
    except BlockswapError as e:
        pytest.fail(f"{e} (`make test` does this itself)")
