"""One registry idiom for every named thing (block types, models, proxies, datasets, reports).

    MODELS = Registry("model")
    @MODELS.register("resnet34")
    def resnet34(): ...
    MODELS.get("resnet43")  # BlockswapError: unknown model 'resnet43'. Did you mean 'resnet34'? Valid: …

No torch here: the registry is imported by the torch-free core.
"""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from .errors import BlockswapError

T = TypeVar("T")


def unknown_name_message(what: str, name: object, valid) -> str:
    """'unknown <what> <name>. Did you mean …? Valid: …' — the one wording for every bad name."""
    valid = list(valid)
    close = difflib.get_close_matches(str(name), [str(v) for v in valid], n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    return f"unknown {what} {name!r}.{hint} Valid: {', '.join(map(str, valid))}."


class Registry(Generic[T]):
    """Names → entries, in registration order; a duplicate name is a programming error."""

    def __init__(self, what: str):
        self.what = what
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} registered twice")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of `add`."""
        return lambda entry: self.add(name, entry)

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise BlockswapError(unknown_name_message(self.what, name, self._entries)) from None

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
