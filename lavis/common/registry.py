"""Typed name -> class registries, one per kind of component.

A registry holds classes only: no run state, no output paths, no global settings. Each kind's
registry lives beside its base class (e.g. ``lavis.models.base_model.MODELS``) so that
``lavis.common`` never imports from the component packages.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from lavis.common.errors import RegistryError

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """Maps names to subclasses of ``base``; refuses duplicates and foreign classes."""

    def __init__(self, kind: str, base: type | None = None) -> None:
        self.kind = kind
        self.base = base
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}  # another project's name -> ours

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: ``@MODELS.register("blip2")``."""

        if not isinstance(name, str) or not name:
            raise RegistryError(f"{self.kind} registry: a name must be a non-empty string, got {name!r}")

        def decorator(cls: T) -> T:
            self.add(name, cls)
            return cls

        return decorator

    def add(self, name: str, cls: T) -> None:
        if not isinstance(cls, type):
            raise RegistryError(f"{self.kind} registry: '{name}' must be a class, got {type(cls).__name__}")
        if self.base is not None and not issubclass(cls, self.base):
            raise RegistryError(
                f"{self.kind} registry: '{name}' ({cls.__module__}.{cls.__qualname__}) "
                f"must subclass {self.base.__module__}.{self.base.__qualname__}"
            )
        existing = self._entries.get(name)
        if existing is not None and existing is not cls:
            raise RegistryError(
                f"{self.kind} registry: '{name}' is already registered to "
                f"{existing.__module__}.{existing.__qualname__}; pick another name"
            )
        self._entries[name] = cls

    def add_alias(self, alias: str, name: str) -> None:
        """Let ``alias`` (e.g. LAVIS's name for the same class) stand for the registered ``name``."""
        if name not in self._entries:
            raise RegistryError(f"{self.kind} registry: alias '{alias}' points at unregistered '{name}'")
        if alias in self._entries or self._aliases.get(alias, name) != name:
            raise RegistryError(f"{self.kind} registry: '{alias}' is already taken")
        self._aliases[alias] = name

    def canonical(self, name: str) -> str:
        """The registered name ``name`` stands for (itself, or what its alias points at)."""
        self.get(name)
        return self._aliases.get(name, name)

    def get(self, name: str) -> T:
        try:
            return self._entries[self._aliases.get(name, name)]
        except KeyError:
            known = sorted(self._entries)
            close = difflib.get_close_matches(str(name), [*known, *self._aliases], n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            aliases = ", ".join(f"{a} -> {n}" for a, n in sorted(self._aliases.items()))
            raise RegistryError(
                f"unknown {self.kind} '{name}'.{hint} Known {self.kind}s: {', '.join(known) or '(none)'}"
                + (f" (also accepted: {aliases})" if aliases else "")
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
