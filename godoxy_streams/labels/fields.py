"""Route fields -> ``RouteSpec``: decide whether a route is a stream, convert every field, and
collect every error of the route (all-or-nothing: one bad field and the route does not start).

``build_routes`` runs small steps in order, each a pure function tested on its own: classify
the fields (unknown ones are errors whatever the route), read the scheme (is it a stream at
all?), refuse the guarded fields a stream cannot honour, the ports, the per-protocol schemes,
convert the other fields, the TLS fields (``tls``: server names, termination), the bind
address, the target host, the target port each protocol dials (published ports on a remote
engine), then publish the ``RouteSpec`` of each protocol.
Pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from godoxy_streams.errors import LabelError
from godoxy_streams.labels.catalog import (
    CONVERTERS,
    LIST_FIELDS,
    TCP_ONLY,
    UDP_ONLY,
    classify,
    hint,
)
from godoxy_streams.labels.precedence import FieldValue
from godoxy_streams.labels.result import Ignored, ParseResult, http_label, http_route
from godoxy_streams.labels.tls import TLSFacts, tls_fields
from godoxy_streams.labels.values import (
    HTTP_SCHEMES,
    ValueProblem,
    has_listen_part,
    parse_bool,
    parse_ip,
    parse_port,
    parse_scheme,
)
from godoxy_streams.model import HealthCheck, RouteOrigin, RouteSpec, Scheme


@dataclass(frozen=True)
class RouteFacts:
    """What the container contributes to one route: where it is and what it exposes."""

    container: str
    origin: RouteOrigin
    target_host: str | None  # None: no usable address (``target_problem`` says why)
    target_problem: str | None = None
    exposed: Mapping[int, frozenset[str]] = field(default_factory=dict)  # port -> {"tcp","udp"}
    published: Mapping[tuple[int, str], int] = field(default_factory=dict)
    remote: bool = False
    label_host_check: Callable[[str], str | None] | None = None  # None: static file, anything goes
    default_bind: str = "0.0.0.0"
    default_host_v6: str | None = None
    tls: TLSFacts = TLSFacts()


@dataclass
class RouteResult:
    routes: list[RouteSpec] = field(default_factory=list)
    errors: list[LabelError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ignored: list[Ignored] = field(default_factory=list)

    def leave(self, item: Ignored) -> None:
        """Leave ``item`` to GoDoxy, with its note."""
        self.ignored.append(item)
        self.notes.append(item.note)

    def as_result(self) -> ParseResult:
        return ParseResult(
            tuple(self.routes), tuple(self.errors), tuple(self.notes), ignored=tuple(self.ignored)
        )


@dataclass
class Problems:
    """The errors of one route, each naming the container, the alias and (when one is to
    blame) the label and its value."""

    container: str
    alias: str
    errors: list[LabelError] = field(default_factory=list)

    def label(self, fv: FieldValue, message: str) -> None:
        self.errors.append(
            LabelError(
                message, container=self.container, alias=self.alias, label=fv.label, value=fv.raw
            )
        )

    def route(self, message: str) -> None:
        self.errors.append(LabelError(message, container=self.container, alias=self.alias))


def read_scheme(fv: FieldValue | None, problems: Problems) -> str | None:
    """The scheme a label names (stream or HTTP), None when unset or invalid."""
    if fv is None:
        return None
    try:
        return parse_scheme(fv.text)
    except ValueProblem as exc:
        problems.label(fv, str(exc))
        return None


def not_a_stream(
    scheme: str | None, scheme_fv: FieldValue | None, port_fv: FieldValue | None
) -> str | None:
    """Why a route is not a stream route (docs/labels.md), or None when it is one."""
    if scheme in HTTP_SCHEMES:
        return f"scheme {scheme}"
    if scheme_fv is None and (port_fv is None or not has_listen_part(port_fv.text)):
        return "no stream scheme and no LISTEN port"
    return None


def guarded_fields(known: Mapping[str, FieldValue], kind: str, problems: Problems) -> None:
    """GoDoxy fields a stream route cannot honour and must not drop in silence (docs/labels.md):
    each is an error when set."""
    mtls = known.get("inbound_mtls_profile")
    if mtls is not None:
        problems.label(
            mtls,
            "inbound mTLS is not supported on stream routes (GoDoxy: HTTP routes only); "
            "this port would accept clients without a certificate (a route that terminates "
            "TLS checks client certificates with tls_client_ca)",
        )
    agent = known.get("agent")
    if agent is not None:
        problems.label(agent, _AGENT[kind == "file"])


_AGENT = {
    False: "agent is not allowed on a container's route: it is reached through the Docker "
    "engine it runs on (GoDoxy rejects agent on Docker routes too)",
    True: "routing a static route through a GoDoxy agent is not supported: it would dial its "
    "host directly",
}


def read_ports(
    port_fv: FieldValue | None,
    scheme_fv: FieldValue | None,
    exposed: Mapping[int, frozenset[str]],
    problems: Problems,
) -> tuple[int | None, int | None]:
    """(listen port or None for "pick one", target port or None when there is none)."""
    if port_fv is not None:
        try:
            return parse_port(port_fv.text)
        except ValueProblem as exc:
            problems.label(port_fv, str(exc))
            return None, None
    if len(exposed) == 1:
        return None, next(iter(exposed))
    if scheme_fv is not None and not problems.errors:
        count = len(exposed)
        listed = f" ({', '.join(str(p) for p in sorted(exposed))})" if count else ""
        problems.route(
            f"needs a port: the container exposes {count} ports{listed}; set port: [LISTEN:]TARGET"
        )
    return None, None


def schemes_for(
    scheme: str | None, target_port: int | None, exposed: Mapping[int, frozenset[str]]
) -> list[str]:
    """The concrete scheme of each route the declaration makes: ``tcp+udp`` is two; no scheme
    is udp when the target port is exposed only as udp, else tcp."""
    if scheme is None and target_port is not None:
        scheme = "udp" if exposed.get(target_port) == frozenset({"udp"}) else "tcp"
    if scheme == "tcp+udp":
        return ["tcp", "udp"]
    return [scheme] if scheme else []


def convert_values(
    known: Mapping[str, FieldValue], problems: Problems
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every table-converted field: (RouteSpec attributes, HealthCheck attributes)."""
    values: dict[str, Any] = {}
    health: dict[str, Any] = {}
    for name, fv in known.items():
        conv = CONVERTERS.get(name)
        if conv is None:
            continue
        attr, func = conv
        try:
            value = func(fv.value if name in LIST_FIELDS else fv.text)
        except ValueProblem as exc:
            problems.label(fv, str(exc))
            continue
        (health if name.startswith("healthcheck.") else values)[attr] = value
    return values, health


def proxy_protocol(
    known: Mapping[str, FieldValue], values: dict[str, Any], schemes: list[str], problems: Problems
) -> None:
    """GoDoxy's ``relay_proxy_protocol_header: true`` is v2; a PROXY header is TCP only."""
    relay = known.get("relay_proxy_protocol_header")
    if relay is not None:
        try:
            if parse_bool(relay.text):
                values.setdefault("proxy_protocol", "v2")
        except ValueProblem as exc:
            problems.label(relay, str(exc))
    if values.get("proxy_protocol") and any(s.startswith("udp") for s in schemes):
        fv = known.get("proxy_protocol") or known["relay_proxy_protocol_header"]
        problems.label(fv, "a PROXY protocol header can be sent on TCP routes only")


def read_bind(
    fv: FieldValue | None, schemes: list[str], default_bind: str, problems: Problems
) -> str:
    """The listen address: the label's IP, else the operator default fitted to a 4/6 scheme."""
    family = {s[-1] for s in schemes if s[-1] in "46"}
    if fv is None:
        if "6" in family and ":" not in default_bind:
            return "::"
        if "4" in family and ":" in default_bind:
            return "0.0.0.0"
        return default_bind
    try:
        bind = parse_ip(fv.text)
    except ValueProblem as exc:
        problems.label(fv, str(exc))
        return default_bind
    is_v6 = ":" in bind
    if ("4" in family and is_v6) or ("6" in family and not is_v6):
        scheme = "/".join(schemes)
        problems.label(fv, f"an IPv{'6' if is_v6 else '4'} bind does not fit scheme {scheme}")
    return bind


def read_host(
    fv: FieldValue | None, schemes: list[str], facts: RouteFacts, problems: Problems
) -> str | None:
    """The target host: the label's (checked against the rules for labels), else the
    container's address, else None with the reason as an error."""
    if fv is not None:
        text = fv.text.strip().strip("[]")
        problem = facts.label_host_check(text) if facts.label_host_check else None
        if problem:
            problems.label(fv, problem)
        return text.lower()
    if any(s.endswith("6") for s in schemes) and facts.default_host_v6:
        return facts.default_host_v6
    if facts.target_host is None and facts.target_problem:
        problems.route(facts.target_problem)
    return facts.target_host


def target_ports(
    target_port: int | None,
    schemes: list[str],
    facts: RouteFacts,
    host_label: bool,
    problems: Problems,
) -> dict[str, int]:
    """The port each scheme dials: the target port, or on a remote engine (unless a ``host``
    label names the target) the port the engine publishes it on for that protocol."""
    if target_port is None:
        return {}
    if not facts.remote or host_label:
        return {s: target_port for s in schemes}
    ports: dict[str, int] = {}
    for s in schemes:
        published = facts.published.get((target_port, s[:3]))
        if published is None:
            problems.route(f"port {target_port}/{s[:3]} is not published on the remote host")
        else:
            ports[s] = published
    return ports


def publish(
    alias: str,
    bind: str,
    listen: int | None,
    host: str,
    ports: Mapping[str, int],
    values: Mapping[str, Any],
    health: Mapping[str, Any],
    origin: RouteOrigin,
) -> list[RouteSpec]:
    """One ``RouteSpec`` per scheme, each with the fields that apply to its protocol."""
    routes = []
    for s, port in ports.items():
        udp = s.startswith("udp")
        fitting = {k: v for k, v in values.items() if k not in (TCP_ONLY if udp else UDP_ONLY)}
        routes.append(
            RouteSpec(
                alias=alias,
                scheme=cast(Scheme, s),
                bind=bind,
                listen_port=listen,
                target_host=host,
                target_port=port,
                origin=origin,
                healthcheck=HealthCheck(**health),
                **fitting,
            )
        )
    return routes


def build_routes(alias: str, fields: Mapping[str, FieldValue], facts: RouteFacts) -> RouteResult:
    """The stream routes one alias declares, or why it declares none."""
    out = RouteResult()
    problems = Problems(facts.container, alias, out.errors)
    sorted_fields = classify(fields)
    for name, fv in sorted_fields.unknown:
        problems.label(fv, f'unknown field "{name}"{hint(name)}')
    known = sorted_fields.known
    scheme = read_scheme(known.get("scheme"), problems)
    why_not = not_a_stream(scheme, known.get("scheme"), known.get("port"))
    if why_not:
        if not out.errors:
            out.leave(http_route(facts.container, alias, why_not))
        return out
    for label in sorted_fields.ignored:
        out.leave(http_label(facts.container, label))
    guarded_fields(known, facts.origin.kind, problems)

    listen, target_port = read_ports(
        known.get("port"), known.get("scheme"), facts.exposed, problems
    )
    schemes = schemes_for(scheme, target_port, facts.exposed)
    values, health = convert_values(known, problems)
    proxy_protocol(known, values, schemes, problems)
    tls_fields(alias, known, values, schemes, listen, facts.tls, problems)
    bind = read_bind(known.get("bind"), schemes, facts.default_bind, problems)
    host = read_host(known.get("host"), schemes, facts, problems)
    ports = target_ports(target_port, schemes, facts, "host" in known, problems)
    if out.errors or not ports or host is None:
        return out
    out.routes = publish(alias, bind, listen, host, ports, values, health, facts.origin)
    return out
