"""What each dataset is (its input shape), where its files live, and fetching Fashion-MNIST for any user
(no root, no torch).

Fashion-MNIST is looked for, in order, in: the folder given (`--data-dir`, `dataset.data_dir`);
`$BLOCKSWAP_DATA_DIR/fashion-mnist`; `data/fashion-mnist` under the working directory and under the
checkout this package runs from (where `blockswap data fetch` puts it); the Debian package's folder.

`fetch_fashion_mnist(dest)` gets the real files without root:
  * apt: `apt-get update` / `apt-get download dataset-fashion-mnist` with apt's state and cache in a
    temporary folder (so no lock or root-owned state is touched), then `dpkg-deb -x` of the .deb;
  * http: the dataset's own download site (where the internet is reachable).
Every file is checked after fetching by the SHA-256 and size of its *decompressed* content (the Debian
package re-gzipped the files, so the .gz bytes differ from the upstream ones while the data do not).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .errors import BlockswapError

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_PACKAGE = "dataset-fashion-mnist"
UPSTREAM_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
PROJECT_SUBDIR = Path("data/fashion-mnist")
METHODS = ("auto", "apt", "http")
# The input each registered dataset yields (tests check every loader against it).
DATASET_SHAPES = {
    "fashion-mnist": {"in_channels": 1, "num_classes": 10, "image_size": 28},
    "cifar10": {"in_channels": 3, "num_classes": 10, "image_size": 32},
    "imagenet": {"in_channels": 3, "num_classes": None, "image_size": 224},  # classes: the folders present
}


@dataclass(frozen=True)
class IdxFile:
    name: str
    size: int  # decompressed bytes
    sha256: str  # of the decompressed bytes


FASHION_MNIST_FILES = (
    IdxFile("train-images-idx3-ubyte.gz", 47_040_016,
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    IdxFile("train-labels-idx1-ubyte.gz", 60_008, "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    IdxFile("t10k-images-idx3-ubyte.gz", 7_840_016, "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    IdxFile("t10k-labels-idx1-ubyte.gz", 10_008, "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
)
FETCH_HINT = ("run `blockswap data fetch fashion-mnist` (no root needed), or pass --data-dir DIR "
              "(dataset.data_dir in a workflow profile)")


def _checkout_root() -> Path | None:
    root = Path(__file__).resolve().parents[3]
    return root if (root / "pyproject.toml").is_file() else None


def fashion_mnist_dirs() -> list[Path]:
    """The standard places, in search order."""
    dirs = []
    if os.environ.get("BLOCKSWAP_DATA_DIR"):
        dirs.append(Path(os.environ["BLOCKSWAP_DATA_DIR"]) / "fashion-mnist")
    dirs.append(Path.cwd() / PROJECT_SUBDIR)
    checkout = _checkout_root()
    if checkout:
        dirs.append(checkout / PROJECT_SUBDIR)
    dirs.append(DEBIAN_DIR)
    return list(dict.fromkeys(dirs))


def has_fashion_mnist(folder: Path) -> bool:
    return all((folder / f.name).is_file() for f in FASHION_MNIST_FILES)


def locate_fashion_mnist(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding the four IDX files: `data_dir` if given, else the first standard place."""
    if data_dir is not None:
        folder = Path(data_dir)
        missing = [f.name for f in FASHION_MNIST_FILES if not (folder / f.name).is_file()]
        if missing:
            raise BlockswapError(f"Fashion-MNIST file {folder / missing[0]} not found; {FETCH_HINT} "
                                 "naming a folder that holds the four *-ubyte.gz files")
        return folder
    for folder in fashion_mnist_dirs():
        if has_fashion_mnist(folder):
            return folder
    raise BlockswapError(f"Fashion-MNIST not found in {', '.join(map(str, fashion_mnist_dirs()))}; {FETCH_HINT}")


def verify(folder: Path) -> None:
    """Each file's decompressed size and SHA-256; a mismatch names the file."""
    for f in FASHION_MNIST_FILES:
        path = folder / f.name
        digest, size = hashlib.sha256(), 0
        try:
            with gzip.open(path, "rb") as stream:
                while chunk := stream.read(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
        except (OSError, EOFError) as e:
            raise BlockswapError(f"{path}: not a readable gzip file ({e})") from None
        if size != f.size or digest.hexdigest() != f.sha256:
            raise BlockswapError(f"{path}: content differs from Fashion-MNIST's ({size:,} bytes, sha256 "
                                 f"{digest.hexdigest()[:12]}…; expected {f.size:,} bytes, {f.sha256[:12]}…)")


def _run(cmd: list[str], cwd: Path) -> None:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or [f"exit {done.returncode}"]
        raise BlockswapError(f"`{cmd[0]} {cmd[-1] if cmd[0] == 'apt-get' else '-x'}` failed: {last[0]}")


def _fetch_apt(work: Path) -> Path:
    """Download and unpack the Debian package as any user; returns the folder of the four files."""
    for tool in ("apt-get", "dpkg-deb"):
        if not shutil.which(tool):
            raise BlockswapError(f"{tool} is not available")
    for sub in ("lists/partial", "cache/archives/partial", "deb"):
        (work / sub).mkdir(parents=True)
    own_state = ["-o", f"Dir::State::Lists={work / 'lists'}", "-o", f"Dir::Cache={work / 'cache'}",
                 "-o", "Debug::NoLocking=1", "-qq"]
    _run(["apt-get", *own_state, "update"], work)
    _run(["apt-get", *own_state, "download", DEBIAN_PACKAGE], work / "deb")
    debs = sorted((work / "deb").glob("*.deb"))
    if not debs:
        raise BlockswapError(f"apt-get download {DEBIAN_PACKAGE} left no .deb file")
    _run(["dpkg-deb", "-x", str(debs[0]), str(work / "root")], work)
    return work / "root" / DEBIAN_DIR.relative_to("/")


def _fetch_http(work: Path) -> Path:
    out = work / "http"
    out.mkdir()
    for f in FASHION_MNIST_FILES:
        try:
            with urllib.request.urlopen(UPSTREAM_URL + f.name, timeout=30) as r, open(out / f.name, "wb") as w:
                shutil.copyfileobj(r, w)
        except OSError as e:
            raise BlockswapError(f"downloading {UPSTREAM_URL + f.name} failed ({e})") from None
    return out


def fetch_fashion_mnist(dest: str | os.PathLike = PROJECT_SUBDIR, method: str = "auto",
                        log=print) -> Path:
    """Put verified Fashion-MNIST files into `dest` (unless a standard place already has them)."""
    if method not in METHODS:
        raise BlockswapError(f"unknown fetch method {method!r}; valid: {', '.join(METHODS)}")
    dest = Path(dest).absolute()
    if has_fashion_mnist(dest):
        verify(dest)
        log(f"Fashion-MNIST is already in {dest}")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    with tempfile.TemporaryDirectory(prefix=".fashion-mnist-", dir=dest.parent) as tmp:
        for name, fetch in (("apt", _fetch_apt), ("http", _fetch_http)):
            if method not in ("auto", name):
                continue
            work = Path(tmp) / name
            work.mkdir()
            try:
                got = fetch(work)
                verify(got)
            except BlockswapError as e:
                failures.append(f"{name}: {e}")
                continue
            staged = Path(tmp) / "staged"
            staged.mkdir()
            for f in FASHION_MNIST_FILES:
                shutil.move(str(got / f.name), staged / f.name)
            if dest.exists():  # an empty or partial folder: keep what else it holds
                for f in FASHION_MNIST_FILES:
                    os.replace(staged / f.name, dest / f.name)
            else:
                os.replace(staged, dest)  # the folder appears complete or not at all
            log(f"Fashion-MNIST fetched with {name} into {dest} (checked: sizes and SHA-256)")
            return dest
    raise BlockswapError(f"could not fetch Fashion-MNIST ({'; '.join(failures)}); copy the four *-ubyte.gz "
                         f"files into {dest} by hand")


def ensure_fashion_mnist(dest: str | os.PathLike = PROJECT_SUBDIR, method: str = "auto", log=print) -> Path:
    """A standard place that already holds the files, else a fresh fetch into `dest`."""
    for folder in fashion_mnist_dirs():
        if has_fashion_mnist(folder):
            verify(folder)
            log(f"Fashion-MNIST found in {folder}")
            return folder
    return fetch_fashion_mnist(dest, method, log)
