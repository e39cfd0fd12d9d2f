"""One registry idiom for every named thing (block types, models, proxies, datasets, reports).

    MODELS = Registry("model")
    @MODELS.register("resnet34")
    def resnet34(): ...
    MODELS.get("resnet43")  # BlockswapError: unknown model 'resnet43'. Did you mean 'resnet34'? Valid: …

A family of names can be registered by a regex (`add_pattern`): `wrn-(\\d+)-(\\d+)` stands for every WRN.

No torch here: the registry is imported by the torch-free core.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, ItemsView, Iterator
from typing import Generic, TypeVar

from .errors import BlockswapError

T = TypeVar("T")


def unknown_name_message(what: str, name: object, valid, valid_label: str = "Valid") -> str:
    """'unknown <what> <name>. Did you mean …? Valid: …' — the one wording for every bad name."""
    valid = list(valid)
    close = difflib.get_close_matches(str(name), [str(v) for v in valid], n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    return f"unknown {what} {name!r}.{hint} {valid_label}: {', '.join(map(str, valid))}."


class Registry(Generic[T]):
    """Names → entries, in registration order; a duplicate name is a programming error.

    `valid_label` and `sort_valid` shape the list of valid names in the unknown-name message only.
    """

    def __init__(self, what: str, *, valid_label: str = "Valid", sort_valid: bool = False):
        self.what = what
        self.valid_label = valid_label
        self.sort_valid = sort_valid
        self._entries: dict[str, T] = {}
        # (regex, entry for a match, example name listed by `names`, hint for the unknown-name message)
        self._patterns: list[tuple[re.Pattern, Callable[[re.Match], T], str, str]] = []

    def add(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} registered twice")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of `add`."""
        return lambda entry: self.add(name, entry)

    def add_pattern(self, pattern: str, make: Callable[[re.Match], T], example: str, hint: str = "") -> None:
        """A family of names: a name that fully matches `pattern` gets the entry `make(match)`.

        `example` stands for the family in `names()`; `hint` ends the unknown-name message.
        """
        if any(p.pattern == pattern for p, *_ in self._patterns):
            raise ValueError(f"{self.what} pattern {pattern!r} registered twice")
        self._patterns.append((re.compile(pattern), make, example, hint))

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            pass
        for pattern, make, _, _ in self._patterns:
            match = pattern.fullmatch(str(name))
            if match:
                return make(match)
        raise BlockswapError(self.unknown_message(name))

    def unknown_message(self, name: object) -> str:
        valid = sorted(self.names()) if self.sort_valid else self.names()
        hints = "".join(f" {hint}" for *_, hint in self._patterns if hint)
        return unknown_name_message(self.what, name, valid, self.valid_label) + hints

    def names(self) -> list[str]:
        """Registered names, then one example per pattern family."""
        return list(self._entries) + [example for _, _, example, _ in self._patterns]

    def items(self) -> ItemsView[str, T]:
        """(name, entry) of the names registered one by one (not the pattern families)."""
        return self._entries.items()

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def knows(self, name: object) -> bool:
        """A name registered one by one or of a pattern family (whose entry may still refuse it)."""
        return name in self._entries or any(p.fullmatch(str(name)) for p, *_ in self._patterns)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
