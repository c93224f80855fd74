"""What ``check`` tells a GoDoxy user at a glance: per container (and for the routes file as a
whole), how many HTTP routes were left to GoDoxy, how many HTTP-only labels were ignored and
how many stream routes are served, with what was ignored and why.

Counted from structured data: the parse results' ``ignored`` records, the routes that won
their listen sockets (a pool member counts for its own container) and the errors, conflicts
included. The table shows the summary when something was left to GoDoxy (a file with only
stream labels needs none: the route table says it all); ``--json`` always carries it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from godoxy_streams.labels.result import Ignored
from godoxy_streams.model import RouteOrigin, RouteSpec

ROUTES_FILE = "routes file"


def source_of(origin: RouteOrigin) -> str:
    """The summary line a route belongs to: its container, or the routes file."""
    return ROUTES_FILE if origin.kind == "file" else origin.name


def item_line(item: Ignored) -> str:
    what = f'route "{item.what}"' if item.kind == "http_route" else item.what
    return f"{what}: {item.why}"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


@dataclass
class SourceSummary:
    """One container (or the routes file): what is served, what is left to GoDoxy."""

    source: str
    stream_routes: int = 0
    errors: int = 0
    excluded: bool = False
    ignored: list[Ignored] = field(default_factory=list)

    @property
    def http_routes(self) -> int:
        return sum(1 for item in self.ignored if item.kind == "http_route")

    @property
    def http_labels(self) -> int:
        return sum(1 for item in self.ignored if item.kind == "http_label")

    def line(self) -> str:
        if self.excluded:
            return f"{self.source}: excluded by its exclude label"
        text = (
            f"{self.source}: {plural(self.http_routes, 'HTTP route')} left to GoDoxy, "
            f"{plural(self.http_labels, 'HTTP-only label')} ignored, "
            f"{plural(self.stream_routes, 'stream route')} served"
        )
        return text + (f", {plural(self.errors, 'error')}" if self.errors else "")

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "http_routes": self.http_routes,
            "http_labels": self.http_labels,
            "stream_routes": self.stream_routes,
            "errors": self.errors,
            "excluded": self.excluded,
            "ignored": [
                {"kind": item.kind, "what": item.what, "why": item.why} for item in self.ignored
            ],
        }


class Summary:
    """The summaries, in the order their sources were read."""

    def __init__(self) -> None:
        self.sources: dict[str, SourceSummary] = {}

    def of(self, source: str) -> SourceSummary:
        return self.sources.setdefault(source, SourceSummary(source))

    def count_served(self, routes: Iterable[RouteSpec]) -> None:
        """Each route that won its socket is served for every container behind it."""
        for route in routes:
            for member in route.members:
                self.of(source_of(member.origin)).stream_routes += 1

    @property
    def left_to_godoxy(self) -> bool:
        return any(s.ignored for s in self.sources.values())

    def lines(self) -> list[str]:
        """The table's block: a line per source, and under it each thing ignored and why."""
        out = ["per container:"]
        for summary in self.sources.values():
            out.append(f"  {summary.line()}")
            out += [f"    {item_line(item)}" for item in summary.ignored]
        return out

    def as_json(self) -> list[dict[str, Any]]:
        return [summary.as_json() for summary in self.sources.values()]
