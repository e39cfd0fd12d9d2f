"""Figure style (one colour and marker per method, log axes) and saving without dates."""

from __future__ import annotations

import os
from pathlib import Path

from ..core.files import atomic_path

FIGURE_FORMATS = ("png", "pdf", "svg")  # a figure's files, by suffix
# One colour and marker per method, fixed so every figure agrees.
STYLE = {"teacher": ("black", "*"), "scaled": ("tab:gray", "s"), "mbconv": ("tab:purple", "D"),
         "moonshine": ("tab:green", "^"), "blockswap": ("tab:red", "o"), "random": ("tab:blue", "."),
         "samples": ("tab:orange", "v"), "unlabelled": ("tab:brown", "x"),
         # controls: their student's colour, an open-looking marker
         "moonshine_kd": ("tab:olive", "2"), "moonshine_scratch": ("tab:green", "1"),
         "blockswap_scratch": ("tab:red", "+"),
         "structured": ("tab:cyan", "P"), "structured_scratch": ("tab:cyan", "X"),
         "structured_crs_off": ("tab:pink", "p")}
# Metadata without dates, so reruns give the same files.
_METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Producer": None}, "svg": {"Date": None}}
# A `make rehearse` run (the workflow's config key rehearsal) marks every table and figure with this.
REHEARSAL_MARK = "REHEARSAL - shrunk sizes, stand-in data where the user's is absent; not evidence. "


def rehearsal() -> bool:
    return bool(os.environ.get("BLOCKSWAP_REHEARSAL"))


def new_figure(panels: int = 1, width: float = 6.4, height: float = 4.4):
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    fig = Figure(figsize=(width * panels if panels > 1 else width, height), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    return fig, list(axes)


def figure_formats() -> tuple[str, ...]:
    """The formats `save_figure` writes, as file suffixes without the dot."""
    return tuple(_METADATA)


def save_figure(fig, path: str | Path) -> Path:
    """One file, its format from the suffix (.png, .pdf, .svg), written atomically."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in _METADATA:
        from ..core.errors import BlockswapError

        raise BlockswapError(f"{path}: unknown figure format {path.suffix or '(no suffix)'}; end it in "
                             f"{', '.join('.' + f for f in _METADATA)}")
    metadata = _METADATA[fmt]
    if rehearsal():
        if not any(t.get_text() == REHEARSAL_MARK for t in fig.texts):
            fig.text(0.5, 0, REHEARSAL_MARK, ha="center", va="top", color="red", fontsize="small")
        metadata = {**metadata, {"png": "Description", "pdf": "Subject", "svg": "Description"}[fmt]: REHEARSAL_MARK}
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight", metadata=metadata)
    return path


def log_axis(ax) -> None:
    """Log x with 1-2-3-5 ticks in engineering notation (100k, 200k, 300k, 500k, 1M): labelled at any range."""
    from matplotlib.ticker import EngFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
    ax.xaxis.set_major_formatter(EngFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
