"""Atomic file output and provenance, so that no job leaves a half-written result behind."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import __version__

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results should be readable like any file
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; it becomes `path` only if the block succeeds. An existing
    `path` must be an empty folder (replaced in the same step); one with files in it is refused."""
    from .errors import BlockswapError

    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise BlockswapError(f"{path} already exists and is not an empty folder; remove it or choose another")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes 0700
        os.rename(tmp, path)  # rename(2) replaces an empty folder atomically
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def check_output(path: str | os.PathLike, what: str = "output") -> None:
    """Refuse, before any work, an output that could not be written: an existing directory, a parent that
    is a file, or a folder this user may not write into (created on the way where it may be)."""
    from .errors import BlockswapError

    path = Path(path)
    if path.is_dir():
        raise BlockswapError(f"{what} {path} is a directory; name a file inside it")
    _check_writable_folder(path.parent, f"{what} {path}")


def _check_writable_folder(folder: Path, named: str) -> None:
    """`folder` can be written into, made where it is missing; else one line that starts with `named` (the user's
    option and path: never the probe file)."""
    from .errors import BlockswapError

    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise BlockswapError(f"{named}: {existing} is a file, not a folder")
    try:  # really try: root passes os.access checks, yet a read-only mount still refuses it
        fd, probe = tempfile.mkstemp(prefix=".blockswap-probe-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise BlockswapError(f"{named}: cannot write into {existing} ({e.strerror}); "
                             "choose another output path") from None


def check_distinct_files(paths: dict[str, str | os.PathLike | None]) -> None:
    """Refuse two roles (e.g. --checkpoint and --teacher) naming one file, also through links or `..`."""
    from .errors import BlockswapError

    named = [(what, Path(p)) for what, p in paths.items() if p is not None]
    for i, (what_a, a) in enumerate(named):
        for what_b, b in named[i + 1:]:
            same = os.path.samefile(a, b) if a.exists() and b.exists() else a.resolve() == b.resolve()
            if same:
                raise BlockswapError(f"{what_a} {a} and {what_b} {b} are the same file; "
                                     f"writing one would destroy the other: give {what_a} another path")


def check_output_dir(path: str | os.PathLike, what: str = "output folder") -> None:
    """As `check_output`, for a folder that files will be written into."""
    from .errors import BlockswapError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BlockswapError(f"{what} {path} is a file, not a folder")
    _check_writable_folder(path, f"{what} {path}")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Strict JSON: a NaN or infinity is refused (bare NaN is not JSON), with nothing written."""
    from .errors import BlockswapError

    try:
        text = json.dumps(obj, indent=2, sort_keys=False, allow_nan=False)
    except ValueError:
        raise BlockswapError(f"{path}: refusing to write NaN or infinity into a JSON file; the numbers "
                             "behind it are not finite (a diverged run?)") from None
    write_text(path, text + "\n")


def read_json(path: str | os.PathLike, what: str):
    """Parse a JSON file; every failure becomes one BlockswapError naming the file and what it should be."""
    from .errors import BlockswapError

    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BlockswapError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BlockswapError(f"{path}: cannot read a {what} there ({e})") from None
    except json.JSONDecodeError as e:
        raise BlockswapError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None


def git_sha() -> str | None:
    """The SHA of the checkout this package runs from, or None outside a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def provenance(config: dict | None = None, seed: int | None = None, device: str | None = None,
               wall_time_s: float | None = None, world_size: int = 1) -> dict:
    """What every result file carries: config values used, seed, version, git SHA, device, the number of
    processes that computed it (data-parallel training: torchrun's WORLD_SIZE), wall time."""
    import torch

    return {
        "config": config or {},
        "seed": seed,
        "blockswap_version": __version__,
        "git_sha": git_sha(),
        "device": device,
        "world_size": world_size,
        "torch_version": str(torch.__version__),
        "python": platform.python_version(),
        "host": platform.node(),
        "wall_time_s": wall_time_s,
    }
