"""The genotype: which model, its input and classes, and one block type per residual block.

JSON form: {"model": "wrn-40-2", "in_channels": 3, "num_classes": 10, "image_size": 32,
            "blocks": ["ConvB4", "Conv", ...]}
Validation ends in one BlockswapError naming the field. `import_legacy_csv` reads the original
BlockSwap genotype CSV (columns `,index,convs,fisher`, `convs` a Python-list string of names).
"""

from __future__ import annotations

import ast
import csv
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .arch import Architecture, get_architecture
from .blocktypes import get_block
from .errors import BlockswapError
from .files import read_json

FIELDS = ("model", "in_channels", "num_classes", "image_size", "blocks")
# Keys that candidate records carry beside the genotype itself; ignored when reading a genotype.
METADATA = {"id", "params", "ops", "macs", "legacy"}


@dataclass(frozen=True)
class Genotype:
    model: str
    blocks: tuple[str, ...]
    in_channels: int = 3
    num_classes: int = 10
    image_size: int = 32

    def __post_init__(self):
        object.__setattr__(self, "blocks", tuple(self.blocks))
        validate(self)

    @property
    def architecture(self) -> Architecture:
        return get_architecture(self.model)

    @classmethod
    def uniform(cls, model: str, block: str, **kw) -> Genotype:
        """Every block of `model` one type (a Moonshine single-blocktype student)."""
        arch = get_architecture(model)
        size = kw.get("image_size", arch.default_image_size)
        kw.setdefault("in_channels", arch.default_in_channels)
        kw.setdefault("num_classes", arch.default_num_classes)
        kw["image_size"] = size
        return cls(model, (block,) * len(arch.slots(size)), **kw)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["blocks"] = list(self.blocks)
        return {k: d[k] for k in FIELDS}

    @classmethod
    def from_dict(cls, d: dict, source: str = "genotype") -> Genotype:
        if not isinstance(d, dict):
            raise BlockswapError(f"{source}: expected a JSON object with fields {', '.join(FIELDS)}")
        unknown = sorted(set(d) - set(FIELDS) - METADATA)
        if unknown:
            raise BlockswapError(f"{source}: unknown field {unknown[0]!r}; fields are {', '.join(FIELDS)}")
        for key in ("model", "blocks"):
            if key not in d:
                raise BlockswapError(f"{source}: missing field {key!r}")
        arch = get_architecture(d["model"])
        kw = {"in_channels": d.get("in_channels", arch.default_in_channels),
              "num_classes": d.get("num_classes", arch.default_num_classes),
              "image_size": d.get("image_size", arch.default_image_size)}
        if not isinstance(d["blocks"], list) or not all(isinstance(b, str) for b in d["blocks"]):
            raise BlockswapError(f"{source}: field 'blocks' must be a list of block-type names")
        try:
            return cls(d["model"], tuple(d["blocks"]), **kw)
        except BlockswapError as e:
            raise BlockswapError(f"{source}: {e}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @property
    def id(self) -> str:
        """A short content hash: the same genotype always gets the same id."""
        return hashlib.sha1(self.to_json().encode()).hexdigest()[:10]


def validate(g: Genotype) -> None:
    arch = get_architecture(g.model)
    for field in ("in_channels", "num_classes", "image_size"):
        value = getattr(g, field)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise BlockswapError(f"field {field!r} must be a positive integer, got {value!r}")
    if g.image_size < arch.min_image_size():
        raise BlockswapError(f"field 'image_size' must be ≥ {arch.min_image_size()} for {g.model}")
    slots = arch.slots(g.image_size)
    if len(g.blocks) != len(slots):
        raise BlockswapError(f"field 'blocks' has {len(g.blocks)} names but {g.model} has {len(slots)} blocks")
    for i, (name, slot) in enumerate(zip(g.blocks, slots)):
        reason = arch.invalid_reason(slot, get_block(name))
        if reason:
            raise BlockswapError(f"field 'blocks'[{i}]: {name!r} cannot be used at block {i} "
                                 f"({slot.cin}→{slot.cout} channels): {reason}")


def load(path: str | os.PathLike, index: int | None = None) -> Genotype:
    """A genotype JSON file, or record `index` (0-based) of a candidates .jsonl file."""
    path = Path(path)
    if index is not None or path.suffix == ".jsonl":
        records = load_records(path)
        if index is None and len(records) != 1:
            raise BlockswapError(f"{path} holds {len(records)} genotypes: say which one with --index I "
                                 f"(0–{len(records) - 1})")
        index = index or 0
        if not 0 <= index < len(records):
            raise BlockswapError(f"{path}: --index {index} is out of range (0–{len(records) - 1})")
        return Genotype.from_dict(records[index], source=f"{path}, line {index + 1}")
    return Genotype.from_dict(read_json(path, "genotype file"), source=str(path))


def load_records(path: str | os.PathLike) -> list[dict]:
    """The JSON objects of a candidates .jsonl file (one per line), or of a JSON file holding one
    object (a pretty-printed genotype) or a list of them."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise BlockswapError(f"{path}: candidates file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BlockswapError(f"{path}: cannot read a candidates .jsonl file there ({e})") from None
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, dict):
        return [whole]
    if isinstance(whole, list) and all(isinstance(r, dict) for r in whole):
        return whole
    records = []
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise BlockswapError(f"{path}, line {n}: not valid JSON ({e.msg})") from None
    return records


def import_legacy_csv(path: str | os.PathLike, model: str, num_classes: int | None = None,
                      in_channels: int | None = None, image_size: int | None = None) -> list[tuple[Genotype, dict]]:
    """Read a BlockSwap genotype CSV: one (Genotype, extra columns such as fisher) per row."""
    path = Path(path)
    arch = get_architecture(model)
    kw = {"in_channels": in_channels or arch.default_in_channels,
          "num_classes": num_classes or arch.default_num_classes,
          "image_size": image_size or arch.default_image_size}
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise BlockswapError(f"{path}: legacy CSV not found") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise BlockswapError(f"{path}: not a readable CSV ({e})") from None
    if not rows or "convs" not in rows[0]:
        raise BlockswapError(f"{path}: expected a legacy BlockSwap CSV with a 'convs' column "
                             "(header ',index,convs,fisher')")
    out = []
    for line, row in enumerate(rows, start=2):
        where = f"{path}, line {line}"
        try:
            names = ast.literal_eval(row["convs"] or "")
        except (ValueError, SyntaxError):
            raise BlockswapError(f"{where}: 'convs' is not a list of block names: {row['convs']!r}") from None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise BlockswapError(f"{where}: 'convs' is not a list of block names: {row['convs']!r}")
        try:
            g = Genotype(model, tuple(names), **kw)
        except BlockswapError as e:
            raise BlockswapError(f"{where}: {e}") from None
        extra = {k: _number(v) for k, v in row.items() if k not in ("convs", "") and k is not None}
        out.append((g, extra))
    return out


def _number(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except (TypeError, ValueError):
            pass
    return text
