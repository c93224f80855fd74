"""What parsing a container or the static routes file gives: routes that may start, errors of
those that may not, notes, and what was left to GoDoxy (``Ignored``: its HTTP routes and
HTTP-only labels, as data, so ``check`` can count them). Frozen data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from godoxy_streams.errors import LabelError
from godoxy_streams.model import RouteSpec

IgnoredKind = Literal["http_route", "http_label"]


@dataclass(frozen=True)
class Ignored:
    """A GoDoxy HTTP route (``what``: its alias) or HTTP-only label (``what``: the label) that
    godoxy-streams leaves to GoDoxy, and why."""

    container: str
    kind: IgnoredKind
    what: str
    why: str

    @property
    def note(self) -> str:
        """The note ``check`` prints and the daemon logs once."""
        if self.kind == "http_route":
            return f'{self.container}: route "{self.what}" is {self.why}: ignored'
        return f"{self.container}: label {self.what} {self.why}: ignored"


def http_route(container: str, alias: str, why_not: str) -> Ignored:
    return Ignored(container, "http_route", alias, f"not a stream route ({why_not})")


def http_label(container: str, label: str) -> Ignored:
    return Ignored(container, "http_label", label, "applies to HTTP routes only")


@dataclass(frozen=True)
class ParseResult:
    """Routes that may start, errors of those that may not, and informational notes (the
    ``ignored`` records' notes among them)."""

    routes: tuple[RouteSpec, ...] = ()
    errors: tuple[LabelError, ...] = ()
    notes: tuple[str, ...] = ()
    excluded: bool = False
    labelled: bool = True
    ignored: tuple[Ignored, ...] = ()

    def merged(self, other: ParseResult) -> ParseResult:
        return ParseResult(
            self.routes + other.routes,
            self.errors + other.errors,
            self.notes + other.notes,
            ignored=self.ignored + other.ignored,
        )
