"""Server names: the patterns a route on a shared TLS socket claims, and the table that picks
the route for a ClientHello's server name. Shared vocabulary (labels, decisions, the data
plane and the certificate store all speak it); pure, no I/O.

Patterns (``NamePattern``), most specific first:

- ``exact``: ``db.example.com`` matches that name only;
- ``wildcard``: ``*.example.com`` matches exactly one more label (``a.example.com``, neither
  ``example.com`` nor ``a.b.example.com``), as in certificates;
- ``label``: GoDoxy's rule for a route on the shared TLS port, an alias without dots:
  ``site2`` matches ``site2`` and ``site2.<any domain>`` (nginx's ``site2.*``); an alias
  with dots is an exact name;
- ``default``: ``*`` matches every ClientHello, with or without a name.

Names compare case-insensitively, a trailing dot ignored, internationalised names in their
IDNA (``xn--``) form; a name from the wire that cannot be normalised matches only the
default. ``NameTable.lookup`` costs one normalisation and at most three dictionary lookups,
whatever the number of routes. A pattern claimed by two owners is a ``Conflict``: the first
(older) owner keeps it. An exact name inside another owner's wildcard or label is no
conflict: the more specific pattern wins that name, the other keeps the rest.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

T = TypeVar("T")
Kind = Literal["exact", "wildcard", "label", "default"]

_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")
MAX_NAME = 253


@dataclass(frozen=True, slots=True)
class NamePattern:
    """One claimed name; ``key`` is its normalised form (the name, the wildcard's parent
    domain, the label; empty for the default)."""

    kind: Kind
    key: str

    def __str__(self) -> str:
        if self.kind == "wildcard":
            return f"*.{self.key}"
        if self.kind == "label":
            return f"{self.key}.*"
        return "*" if self.kind == "default" else self.key

    def matches(self, name: str | None) -> bool:
        """Whether a normalised server name (``server_name``) matches this pattern."""
        if self.kind == "default":
            return True
        if name is None:
            return False
        if self.kind == "exact":
            return name == self.key
        first, dot, rest = name.partition(".")
        if self.kind == "wildcard":
            return bool(first) and rest == self.key
        return first == self.key


DEFAULT = NamePattern("default", "")


def sni_pattern(text: str) -> NamePattern:
    """The pattern of one ``sni`` value: ``*``, ``*.example.com`` or an exact name.
    Raises ValueError saying what is wrong."""
    value = text.strip()
    if value == "*":
        return DEFAULT
    if value.startswith("*."):
        return NamePattern("wildcard", _domain(value[2:], text))
    return NamePattern("exact", _domain(value, text))


def parse_pattern(text: str) -> NamePattern:
    """A pattern from its written form (``str(pattern)``): ``*``, ``*.example.com``,
    ``site2.*`` (GoDoxy's alias rule) or an exact name. Raises ValueError."""
    value = text.strip()
    if value.endswith(".*") and value != ".*":
        label = _domain(value[:-2], text)
        if "." in label:
            raise ValueError(f"{text!r}: only a single label may stand before .* (site2.*)")
        return NamePattern("label", label)
    return sni_pattern(value)


def patterns_text(patterns: Iterable[NamePattern]) -> tuple[str, ...]:
    """Patterns in written form, sorted and without repeats (how a route stores them)."""
    return tuple(sorted({str(p) for p in patterns}))


def alias_pattern(alias: str) -> NamePattern:
    """The pattern GoDoxy gives a route's alias on the shared TLS port: an alias with dots
    is an exact name, one without dots a label (``site2`` -> ``site2.*``)."""
    name = _domain(alias.strip(), alias)
    return NamePattern("exact" if "." in name else "label", name)


def _domain(value: str, text: str) -> str:
    """``value`` as a normalised DNS name; ValueError naming ``text`` if it is not one."""
    if "*" in value:
        raise ValueError(f"{text!r}: a wildcard must be the whole first label (*.example.com)")
    name = server_name(value)
    if name is None or len(name) > MAX_NAME:
        raise ValueError(f"{text!r} is not a valid server name")
    if any(_LABEL.match(label) is None for label in name.split(".")):
        raise ValueError(f"{text!r} is not a valid server name (labels: letters, digits, -, _)")
    if _is_ip(name):
        raise ValueError(f"{text!r} is an IP address; TLS server names are DNS names")
    return name


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def server_name(raw: str | bytes | None) -> str | None:
    """A server name in the form patterns compare with: lower case, no trailing dot, IDNA
    A-labels. None for no name or one that cannot be normalised. Never raises."""
    if raw is None:
        return None
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
    name = raw[:-1] if raw.endswith(".") else raw
    if not name:
        return None
    if name.isascii():
        return name.lower()
    try:
        return name.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None


@dataclass(frozen=True, slots=True)
class Conflict(Generic[T]):
    """``pattern`` is claimed by ``owner`` (who keeps it) and by ``other`` (who does not)."""

    pattern: NamePattern
    owner: T
    other: T


class NameTable(Generic[T]):
    """Which owner serves which server name; built from claims in order of age."""

    __slots__ = ("_exact", "_wildcard", "_label", "_default", "conflicts")

    def __init__(self, claims: Iterable[tuple[T, Iterable[NamePattern]]] = ()) -> None:
        self._exact: dict[str, tuple[T, NamePattern]] = {}
        self._wildcard: dict[str, tuple[T, NamePattern]] = {}
        self._label: dict[str, tuple[T, NamePattern]] = {}
        self._default: tuple[T, NamePattern] | None = None
        self.conflicts: list[Conflict[T]] = []
        for owner, patterns in claims:
            for pattern in patterns:
                self._claim(owner, pattern)

    def _claim(self, owner: T, pattern: NamePattern) -> None:
        if pattern.kind == "default":
            if self._default is None:
                self._default = (owner, pattern)
                return
            held = self._default
        else:
            held = self._index(pattern.kind).setdefault(pattern.key, (owner, pattern))
        if held[0] != owner:
            self.conflicts.append(Conflict(pattern, held[0], owner))

    def _index(self, kind: Kind) -> dict[str, tuple[T, NamePattern]]:
        if kind == "exact":
            return self._exact
        return self._wildcard if kind == "wildcard" else self._label

    def lookup(self, name: str | None) -> tuple[T, NamePattern] | None:
        """The owner for a normalised server name (``server_name``) and the pattern that
        chose it; None when nothing matches and there is no default."""
        if name is not None:
            hit = self._exact.get(name)
            if hit is not None:
                return hit
            first, _, rest = name.partition(".")
            if first and rest:
                hit = self._wildcard.get(rest)
                if hit is not None:
                    return hit
            hit = self._label.get(first)
            if hit is not None:
                return hit
        return self._default

    def match(self, name: str | None) -> T | None:
        hit = self.lookup(name)
        return None if hit is None else hit[0]

    def __len__(self) -> int:
        return (
            len(self._exact) + len(self._wildcard) + len(self._label) + (self._default is not None)
        )


def overlap(ours: Iterable[NamePattern], theirs: Sequence[NamePattern]) -> NamePattern | None:
    """The first of ``ours`` that ``theirs`` claims too (a conflict between two routes on one
    socket), or None. Linear in the two sizes."""
    claimed = set(theirs)
    return next((p for p in ours if p in claimed), None)
