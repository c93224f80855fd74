"""Builders for label-grammar unit tests: a container's facts and a one-call parse."""

from __future__ import annotations

from typing import Any

from godoxy_streams.containers import ContainerInfo, PortFact
from godoxy_streams.labels import ParseContext, ParseResult, parse_container

IP = "172.17.0.5"


def container(labels: dict[str, str], **facts: Any) -> ContainerInfo:
    facts.setdefault("networks", {"bridge": IP})
    ports = facts.pop("ports", ())
    facts["ports"] = tuple(
        p if isinstance(p, PortFact) else PortFact(int(p.split("/")[0]), p.split("/")[1])
        for p in ports
    )
    return ContainerInfo(id="c0ffee", name=facts.pop("name", "web"), labels=labels, **facts)


def parse(labels: dict[str, str], ctx: ParseContext | None = None, **facts: Any) -> ParseResult:
    return parse_container(container(labels, **facts), ctx or ParseContext())


def routes(
    labels: dict[str, str], **facts: Any
) -> list[tuple[str, str, str, int | None, str, int]]:
    """(alias, scheme, bind, listen, target host, target port) of every route; fails on errors."""
    result = parse(labels, **facts)
    assert not result.errors, [str(e) for e in result.errors]
    return [
        (r.alias, r.scheme, r.bind, r.listen_port, r.target_host, r.target_port)
        for r in result.routes
    ]


def errors(labels: dict[str, str], ctx: ParseContext | None = None, **facts: Any) -> list[str]:
    result = parse(labels, ctx, **facts)
    assert not result.routes or result.errors, "expected errors"
    return [str(e) for e in result.errors]
