"""``godoxy-streams check``: what routes a compose file, a routes file or the live engine
declares, and every error, as a table or as JSON. Predicts what the daemon will do, and says
per container what was left to GoDoxy (``check_summary``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from godoxy_streams.app.check_summary import ROUTES_FILE, Summary, source_of
from godoxy_streams.app.routes_command import sni_suffix
from godoxy_streams.containers import ContainerInfo
from godoxy_streams.decide.desired import build_desired
from godoxy_streams.docker_endpoints import EngineSettings
from godoxy_streams.errors import LabelError
from godoxy_streams.labels import ParseContext, ParseResult, parse_container
from godoxy_streams.model import RouteSpec
from godoxy_streams.sources.compose import load_compose, yaml11_traps
from godoxy_streams.sources.docker import DockerSource
from godoxy_streams.streams.sockets import where


@dataclass
class CheckReport:
    routes: list[RouteSpec] = field(default_factory=list)
    errors: list[LabelError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    summary: Summary = field(default_factory=Summary)

    def add(self, result: ParseResult, source: str) -> None:
        """One container's (or the routes file's) result; ``source`` names its summary."""
        self.routes.extend(result.routes)
        self.errors.extend(result.errors)
        self.notes.extend(result.notes)
        if result.labelled and (source != ROUTES_FILE or result != ParseResult()):
            summary = self.summary.of(source)
            summary.errors += len(result.errors)
            summary.excluded = result.excluded
            summary.ignored.extend(result.ignored)

    def as_json(self) -> dict[str, Any]:
        return {
            "routes": [route.public_dict() for route in self.routes],
            "errors": [error.as_dict() for error in self.errors],
            "notes": list(self.notes),
            "summary": self.summary.as_json(),
        }


def report_for(
    infos: Iterable[ContainerInfo],
    static: ParseResult,
    ctx: ParseContext,
    engine_hosts: Mapping[str, str | None] | None = None,
) -> CheckReport:
    """Parse every container, then predict listen-socket conflicts as the daemon would.
    ``engine_hosts`` names the address of each remote engine (None or absent: local)."""
    report = CheckReport()
    report.add(static, ROUTES_FILE)
    for info in infos:
        host = (engine_hosts or {}).get(info.engine)
        ctx_here = ctx if host is None else replace(ctx, remote_host=host)
        report.add(parse_container(info, ctx_here), info.name)
    desired = build_desired(report.routes)
    for conflict in desired.conflicts:
        report.errors.append(
            LabelError(
                "conflict: " + conflict.message,
                container=conflict.route.origin.name,
                alias=conflict.route.alias,
            )
        )
        report.summary.of(source_of(conflict.route.origin)).errors += 1
    report.routes = [
        winner
        for r in report.routes
        if (winner := desired.routes.get(r.key)) is not None and winner.members[0] == r.members[0]
    ]
    report.summary.count_served(report.routes)
    return report


def check_compose(path: Path, ctx: ParseContext) -> CheckReport:
    compose_ctx = replace(ctx, mode="compose")
    report = report_for(load_compose(path), ParseResult(), compose_ctx)
    report.notes.extend(yaml11_traps(path.read_text()))
    return report


async def check_engines(engines: Sequence[EngineSettings], ctx: ParseContext) -> CheckReport:
    """The routes the running containers of every engine declare, conflicts across engines
    included."""
    infos: list[ContainerInfo] = []
    hosts: dict[str, str | None] = {}
    for index, engine in enumerate(engines):
        name = engine.display_name(index)
        hosts[name] = engine.remote_host
        source = DockerSource(engine.client_url(), engine=name, ssl_context=engine.ssl_context())
        try:
            await source.connect()
            infos += [info for info in await source.list_containers() if info.running]
        finally:
            await source.close()
    return report_for(infos, ParseResult(), ctx, hosts)


def render_table(report: CheckReport) -> str:
    header = ("ALIAS", "SCHEME", "LISTEN", "TARGET", "SOURCE")
    rows = [header]
    for route in report.routes:
        bind = f"[{route.bind}]" if ":" in route.bind else route.bind
        members = route.members
        rows.append(
            (
                route.alias,
                route.scheme,
                f"{bind}:{route.listen_port or 'auto'}"
                + sni_suffix(route.sni, route.tls_termination),
                ",".join(where(m.address) for m in members),
                ",".join(m.origin.name for m in members),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.append("")
    for error in report.errors:
        lines.append(f"error: {error}")
    summary = report.summary
    shown = {item.note for s in summary.sources.values() for item in s.ignored}
    for note in report.notes:
        if note not in shown:
            lines.append(f"note: {note}")
    if summary.left_to_godoxy:
        lines += summary.lines()
    lines.append(f"{len(report.routes)} route(s), {len(report.errors)} error(s)")
    return "\n".join(lines)


def render(report: CheckReport, *, as_json: bool) -> str:
    return json.dumps(report.as_json(), indent=2) if as_json else render_table(report)
