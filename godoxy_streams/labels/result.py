"""What parsing a container or the static routes file gives: routes that may start, errors of
those that may not, and notes. Frozen data."""

from __future__ import annotations

from dataclasses import dataclass

from godoxy_streams.errors import LabelError
from godoxy_streams.model import RouteSpec


@dataclass(frozen=True)
class ParseResult:
    """Routes that may start, errors of those that may not, and informational notes."""

    routes: tuple[RouteSpec, ...] = ()
    errors: tuple[LabelError, ...] = ()
    notes: tuple[str, ...] = ()
    excluded: bool = False
    labelled: bool = True

    def merged(self, other: ParseResult) -> ParseResult:
        return ParseResult(
            self.routes + other.routes, self.errors + other.errors, self.notes + other.notes
        )
