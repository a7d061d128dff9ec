"""One small registry per kind (data sets, heads, latents, local backbones, losses, curvature
methods, --wrt targets, HeRD forms, regularizers, metrics, attacks, attribution methods); each entry
an object with its ``name``, ``help`` and metadata; unknown names list the valid ones."""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class HerdError(ValueError):
    """A problem with the user's input: the message names it and says what to do."""


class Registry(Generic[T]):
    """Entries by name: ``add(entry)`` registers an object under its ``name`` (``register(name)``
    is the decorator form, for classes and functions); ``get`` explains misses."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise KeyError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return deco

    def add(self, entry: T) -> T:
        """Register ``entry`` under its own ``name``."""
        return self.register(entry.name)(entry)

    def get(self, name: str) -> T:
        if name not in self._items:
            raise HerdError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            )
        return self._items[name]

    def names(self, sort: bool = True) -> list[str]:
        """The registered names, sorted (or in registration order)."""
        return sorted(self._items) if sort else list(self._items)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for tests that register a toy entry)."""
        self._items.pop(name, None)

    def __contains__(self, name: str) -> bool:
        return name in self._items
