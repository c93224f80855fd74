"""The GoDoxy compatibility corpus: cases taken from GoDoxy's own tests and documentation
(``cases/*.yaml``, one file per GoDoxy source), each naming the file it came from, the result
GoDoxy gives and ours, and the code that runs a case through ``godoxy-streams check`` as a user
would: a compose file (``check --compose FILE --json``), a routes file (``check --routes FILE
--json``), or, for what a compose file cannot say (a remote engine), the containers of a live
engine (``check``'s engine path, ``report_for``).

A case is ``equal`` (we serve the streams GoDoxy serves, and reject what it rejects; its HTTP
routes are left to it with a note), or carries ``deliberate:`` (the docs/labels.md rule we follow
where GoDoxy differs) or ``gap:`` (a GoDoxy feature not built yet).

Case fields: ``name``, ``godoxy`` (its result, in words), ``kind`` (``labels``, the default;
``routes_file``; ``engine``), the input (``labels`` with ``container``, ``container_name``,
``ports``, ``expose``, ``network_mode``, ``networks``, or ``services`` for several containers;
``file`` for a routes file; ``engine`` and ``facts`` for an engine case), ``settings`` (the
operator's, e.g. ``tls_port: 443`` as GoDoxy's users set it: a ``--config`` file), and
``ours``: ``routes`` (``alias scheme bind:listen -> host:port``, then ``sni NAMES`` for a
route chosen by TLS server name and ``terminated`` when it terminates TLS; exactly),
``errors`` (``label: text``, exactly as many), ``notes`` (texts that must appear), ``fields``
(``alias[/scheme]`` -> RouteSpec attribute -> value)."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from godoxy_streams.app import check, cli
from godoxy_streams.app.context import settings_context
from godoxy_streams.containers import ContainerInfo, PortFact
from godoxy_streams.labels import ParseContext, ParseResult
from godoxy_streams.model import RouteSpec
from godoxy_streams.settings import Settings
from godoxy_streams.sources.routes_file import load_routes_file

CASES = Path(__file__).parent / "cases"
SERVICE_KEYS = ("container_name", "image", "labels", "ports", "expose", "network_mode", "networks")


@dataclass(frozen=True)
class Case:
    file: str
    source: str  # owner/repo:path of the GoDoxy file the case comes from
    entry: Mapping[str, Any]

    @property
    def name(self) -> str:
        return str(self.entry["name"])

    @property
    def id(self) -> str:
        return f"{Path(self.file).stem}::{self.name}"

    @property
    def kind(self) -> str:
        return str(self.entry.get("kind", "labels"))

    @property
    def ours(self) -> Mapping[str, Any]:
        return self.entry.get("ours") or {}

    @property
    def deliberate(self) -> str | None:
        return self.entry.get("deliberate")

    @property
    def gap(self) -> str | None:
        return self.entry.get("gap")

    @property
    def documented(self) -> bool:
        """A stream example of GoDoxy's documentation, which must check clean."""
        return self.entry.get("documented") == "true"


def load_cases() -> list[Case]:
    """Every case (all scalars read as text, as the daemon reads labels)."""
    cases = []
    for path in sorted(CASES.glob("*.yaml")):
        document = yaml.load(path.read_text(), Loader=yaml.BaseLoader)
        for entry in document["cases"]:
            cases.append(Case(path.name, entry.get("source", document["source"]), entry))
    return cases


@dataclass
class Outcome:
    """What ``check`` said: its exit code, its JSON, and the routes as objects."""

    exit_code: int
    report: dict[str, Any]
    routes: list[RouteSpec] = field(default_factory=list)

    def route_lines(self) -> list[str]:
        return sorted(route_line(r) for r in self.report["routes"])


def route_line(route: Mapping[str, Any]) -> str:
    bind = f"[{route['bind']}]" if ":" in route["bind"] else route["bind"]
    listen = route["listen_port"] or "auto"
    line = (
        f"{route['alias']} {route['scheme']} {bind}:{listen} -> "
        f"{route['target_host']}:{route['target_port']}"
    )
    if route.get("sni"):
        line += " sni " + ",".join(route["sni"])
    return line + (" terminated" if route.get("tls_termination") else "")


def compose_document(entry: Mapping[str, Any]) -> dict[str, Any]:
    services = entry.get("services") or {
        entry.get("container", "app"): {k: entry[k] for k in SERVICE_KEYS if k in entry}
    }
    document: dict[str, Any] = {"services": {}}
    networks: set[str] = set()
    for name, given in services.items():
        service = {"image": given.get("image", "alpine")}
        service.update({k: given[k] for k in SERVICE_KEYS if k in given and k != "image"})
        networks.update(given.get("networks") or [])
        document["services"][name] = service
    if networks:
        document["networks"] = {n: {} for n in sorted(networks)}
    return document


def run_cli(args: list[str]) -> tuple[int, dict[str, Any]]:
    """``godoxy-streams ARGS`` in this process: exit code and the JSON it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(args)
    return code, json.loads(out.getvalue())


def write_input(case: Case, where: Path) -> list[str]:
    """The case's input as a file under ``where``, and the ``check`` arguments that read it
    (``--config FILE`` first when the case has operator settings)."""
    config = []
    if case.entry.get("settings"):
        config_path = where / "config.yml"
        config_path.write_text(yaml.safe_dump(dict(case.entry["settings"])))
        config = ["--config", str(config_path)]
    if case.kind == "routes_file":
        path = where / "routes.yml"
        path.write_text(case.entry["file"])
        return ["check", *config, "--no-docker", "--routes", str(path), "--json"]
    path = where / "compose.yml"
    path.write_text(yaml.safe_dump(compose_document(case.entry), sort_keys=False))
    return ["check", *config, "--compose", str(path), "--json"]


def case_context(case: Case, where: Path) -> ParseContext:
    """What the case's operator settings make of the label grammar's context."""
    if not case.entry.get("settings"):
        return ParseContext()
    return settings_context(Settings.load(where / "config.yml"))


def run_case(case: Case, where: Path) -> Outcome:
    if case.kind == "engine":
        return run_engine_case(case)
    args = write_input(case, where)
    code, report = run_cli(args)
    path = Path(args[-2])
    ctx = case_context(case, where)
    if case.kind == "routes_file":
        routes = check.report_for([], load_routes_file(path, ctx), ctx).routes
    else:
        routes = check.check_compose(path, ctx).routes
    return Outcome(code, report, routes)


def run_engine_case(case: Case) -> Outcome:
    """A container of a live engine (``facts``: name, labels, ports ``private/proto:public``,
    networks) on the engine ``engine`` (a URL; ``tcp://HOST:PORT`` is remote)."""
    facts = case.entry["facts"]
    ports = []
    for text in facts.get("ports") or []:
        inner, _, public = text.partition(":")
        private, _, proto = inner.partition("/")
        ports.append(PortFact(int(private), proto or "tcp", int(public) if public else None))
    info = ContainerInfo(
        id="c0ffee",
        name=facts.get("name", "a"),
        labels=dict(facts.get("labels") or {}),
        networks=dict(facts.get("networks") or {}),
        ports=tuple(ports),
        engine="engine",
    )
    url = case.entry["engine"]
    host = url.split("://", 1)[1].rsplit(":", 1)[0] if url.startswith("tcp://") else None
    report = check.report_for([info], ParseResult(), ParseContext(), {"engine": host})
    return Outcome(1 if report.errors else 0, report.as_json(), report.routes)


def error_matches(expected: str, error: Mapping[str, Any]) -> bool:
    """``label: text`` (or ``alias: text``, ``container: text``) against one JSON error."""
    key, _, text = expected.partition(": ")
    names = {error.get("label"), error.get("alias"), error.get("container")}
    return key in names and text in error["message"]


def field_value(routes: list[RouteSpec], where: str, attr: str) -> str:
    alias, _, scheme = where.partition("/")
    (route,) = [r for r in routes if r.alias == alias and (not scheme or r.scheme == scheme)]
    value: Any = route
    for part in attr.split("."):
        value = getattr(value, part)
    return str(value)
