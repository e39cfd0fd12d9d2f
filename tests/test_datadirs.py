"""Finding and fetching Fashion-MNIST: the real fetch path, run into an empty folder on every test run,
also as an unprivileged user when the tests run as root (a cluster user has no root and no sudo)."""

import gzip
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from blockswap.core import datadirs
from blockswap.core.datadirs import FASHION_MNIST_FILES, fashion_mnist_dirs, locate_fashion_mnist, verify
from blockswap.core.errors import BlockswapError

from conftest import python_for

SRC = Path(__file__).resolve().parents[1] / "src"


def _fetch(dest: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "blockswap", "data", "fetch", "fashion-mnist", "--dest",
                           str(dest), "--method", "apt"], capture_output=True, text=True, timeout=600)


def _check_fetched(dest: Path) -> None:
    assert sorted(p.name for p in dest.iterdir()) == sorted(f.name for f in FASHION_MNIST_FILES)
    verify(dest)  # decompressed sizes and SHA-256 of the real dataset
    with gzip.open(dest / "t10k-labels-idx1-ubyte.gz") as f:
        header = f.read(8)
    assert header == b"\x00\x00\x08\x01" + (10_000).to_bytes(4, "big")


def test_fetch_into_an_empty_folder(tmp_path):
    dest = tmp_path / "empty" / "fashion-mnist"
    done = _fetch(dest)
    assert done.returncode == 0, done.stderr
    assert "fetched with apt" in done.stderr
    _check_fetched(dest)
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(".")]  # no work folder left behind
    from blockswap.data.datasets import load_dataset

    test = load_dataset("fashion-mnist", dest, split="test")
    assert tuple(test.images.shape) == (10_000, 1, 28, 28)
    again = _fetch(dest)  # a second run finds and re-checks the files, fetching nothing
    assert again.returncode == 0 and "already in" in again.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="runs as root only, to switch to an unprivileged user "
                                              "(as a non-root user the test above is already unprivileged)")
def test_fetch_as_an_unprivileged_user():
    user = "nobody"
    # pytest's tmp_path lies under a 0700 folder; the user needs a path it can reach.
    tmp_path = Path(tempfile.mkdtemp(prefix="blockswap-user-"))
    tmp_path.chmod(0o755)
    try:
        _fetch_as(user, tmp_path)
    finally:
        shutil.rmtree(tmp_path)


def _fetch_as(user: str, tmp_path: Path) -> None:
    python = python_for(user)
    assert python, f"no Python ≥ 3.11 that user {user} may run"
    # The data step needs only the standard library: a copy of the package the user can read is enough.
    shutil.copytree(SRC / "blockswap", tmp_path / "src" / "blockswap", ignore=shutil.ignore_patterns("__pycache__"))
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o777)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "PYTHONPATH": str(tmp_path / "src")}
    dest = home / "data" / "fashion-mnist"
    # The function `blockswap data fetch` runs (the CLI itself needs the venv's numpy, out of the user's reach).
    code = ("import sys; from blockswap.core.datadirs import fetch_fashion_mnist; "
            "fetch_fashion_mnist(sys.argv[1], 'apt')")
    done = subprocess.run(["runuser", "-u", user, "--", python, "-c", code, str(dest)], capture_output=True,
                          text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    _check_fetched(dest)
    assert {p.stat().st_uid for p in dest.iterdir()} == {65534}


def test_locate_searches_the_standard_places_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BLOCKSWAP_DATA_DIR", str(tmp_path / "shared"))
    dirs = fashion_mnist_dirs()
    assert dirs[0] == tmp_path / "shared" / "fashion-mnist"
    assert dirs[1] == tmp_path / "data" / "fashion-mnist"
    assert dirs[-1] == Path("/usr/share/datasets/fashion-mnist")
    for f in FASHION_MNIST_FILES:  # empty files: enough for locating, not for verifying
        (tmp_path / "data" / "fashion-mnist").mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / "fashion-mnist" / f.name).write_bytes(b"")
    monkeypatch.setattr(datadirs, "DEBIAN_DIR", tmp_path / "absent")
    monkeypatch.setattr(datadirs, "_checkout_root", lambda: None)
    assert locate_fashion_mnist() == tmp_path / "data" / "fashion-mnist"
    with pytest.raises(BlockswapError, match="content differs|not a readable gzip"):
        verify(tmp_path / "data" / "fashion-mnist")


def test_missing_data_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BLOCKSWAP_DATA_DIR", raising=False)
    monkeypatch.setattr(datadirs, "DEBIAN_DIR", tmp_path / "absent")
    monkeypatch.setattr(datadirs, "_checkout_root", lambda: None)
    with pytest.raises(BlockswapError, match=r"not found in .*blockswap data fetch fashion-mnist"):
        locate_fashion_mnist()
    with pytest.raises(BlockswapError, match=r"nowhere/train-images-idx3-ubyte.gz not found"):
        locate_fashion_mnist(tmp_path / "nowhere")


def test_a_corrupt_file_is_named(tmp_path):
    for f in FASHION_MNIST_FILES:
        with gzip.open(tmp_path / f.name, "wb") as out:
            out.write(b"\x00" * 16)
    with pytest.raises(BlockswapError, match=r"train-images-idx3-ubyte.gz: content differs .*16 bytes"):
        verify(tmp_path)
