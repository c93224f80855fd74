"""Route fields -> ``RouteSpec``: decide whether a route is a stream, convert every field, and
collect every error of the route (all-or-nothing: one bad field and the route does not start).
Pure functions, no I/O."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from godoxy_streams.errors import LabelError
from godoxy_streams.labels.grammar import IDLE_WATCHER_LABELS, FieldValue
from godoxy_streams.labels.values import (
    HTTP_SCHEMES,
    ValueProblem,
    has_listen_part,
    parse_bool,
    parse_choice,
    parse_duration,
    parse_ip,
    parse_networks,
    parse_port,
    parse_positive_duration,
    parse_positive_int,
    parse_proxy_protocol,
    parse_scheme,
)
from godoxy_streams.model import HealthCheck, RouteOrigin, RouteSpec, Scheme

SYNONYMS = {
    "healthcheck.disabled": "healthcheck.disable",
    "loadbalance.mode": "load_balance.mode",
}

# field -> (RouteSpec/HealthCheck attribute, converter); None marks fields handled by hand.
Converter = Callable[[Any], Any]
CONVERTERS: dict[str, tuple[str, Converter] | None] = {
    "scheme": None,
    "port": None,
    "bind": None,
    "host": None,
    "proxy_protocol": ("proxy_protocol", parse_proxy_protocol),
    "relay_proxy_protocol_header": None,
    "acl.allow": ("acl_allow", parse_networks),
    "acl.deny": ("acl_deny", parse_networks),
    "max_connections": ("max_connections", parse_positive_int),
    "max_sessions": ("max_sessions", parse_positive_int),
    "conn_idle_timeout": ("conn_idle_timeout", parse_positive_duration),
    "udp_timeout": ("udp_timeout", parse_positive_duration),
    "on_stop": ("on_stop", lambda v: parse_choice(v, ("drain", "kill"))),
    "drain_timeout": ("drain_timeout", parse_duration),
    "healthcheck.disable": ("disable", parse_bool),
    "healthcheck.interval": ("interval", parse_positive_duration),
    "healthcheck.timeout": ("timeout", parse_positive_duration),
    "healthcheck.retries": ("retries", parse_positive_int),
    "healthcheck.rise": ("rise", parse_positive_int),
    "healthcheck.send": ("send", str),
    "healthcheck.expect": ("expect", str),
    "load_balance.mode": (
        "load_balance",
        lambda v: parse_choice(v, ("round_robin", "least_conn", "ip_hash")),
    ),
}
TCP_ONLY = {"max_connections", "conn_idle_timeout"}
UDP_ONLY = {"max_sessions", "udp_timeout"}
LIST_FIELDS = {"acl.allow", "acl.deny"}
HTTP_ONLY = (
    frozenset(
        {
            "middlewares",
            "homepage",
            "rules",
            "rule_file",
            "access_log",
            "path_patterns",
            "no_tls_verify",
            "response_header_timeout",
            "disable_compression",
            "ssl_server_name",
            "ssl_trusted_certificate",
            "ssl_certificate",
            "ssl_certificate_key",
            "ssl_protocols",
            "tls_termination",
            "agent",
            "inbound_mtls_profile",
            "proxmox",
            "healthcheck.path",
            "healthcheck.use_get",
            "load_balance.link",
            "load_balance.weight",
            "load_balance.sticky",
            "load_balance.sticky_max_age",
            "load_balance.options",
        }
    )
    | IDLE_WATCHER_LABELS
)


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


@dataclass
class RouteResult:
    routes: list[RouteSpec] = field(default_factory=list)
    errors: list[LabelError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _hint(name: str) -> str:
    close = difflib.get_close_matches(name, list(CONVERTERS) + list(SYNONYMS), n=1, cutoff=0.6)
    return f'; did you mean "{close[0]}"?' if close else ""


def build_routes(alias: str, fields: Mapping[str, FieldValue], facts: RouteFacts) -> RouteResult:
    """The stream routes one alias declares, or why it declares none."""
    out = RouteResult()

    def fail(fv: FieldValue, message: str) -> None:
        out.errors.append(
            LabelError(
                message, container=facts.container, alias=alias, label=fv.label, value=fv.raw
            )
        )

    known: dict[str, FieldValue] = {}
    unknown: list[tuple[str, FieldValue]] = []
    ignored: list[str] = []
    for raw_name, fv in fields.items():
        name = SYNONYMS.get(raw_name, raw_name)
        if name in CONVERTERS:
            known[name] = fv
        elif name in HTTP_ONLY or name.split(".")[0] in HTTP_ONLY:
            ignored.append(fv.label)
        else:
            unknown.append((name, fv))

    scheme_fv = known.get("scheme")
    scheme: str | None = None
    if scheme_fv is not None:
        try:
            scheme = parse_scheme(scheme_fv.text)
        except ValueProblem as exc:
            fail(scheme_fv, str(exc))
    port_fv = known.get("port")
    if scheme in HTTP_SCHEMES or (
        scheme is None
        and scheme_fv is None
        and (port_fv is None or not has_listen_part(port_fv.text))
    ):
        what = f"scheme {scheme}" if scheme else "no stream scheme and no LISTEN port"
        out.notes.append(
            f'{facts.container}: route "{alias}" is not a stream route ({what}): ignored'
        )
        return out
    for label in ignored:
        out.notes.append(f"{facts.container}: label {label} applies to HTTP routes only: ignored")
    for name, fv in unknown:
        fail(fv, f'unknown field "{name}"{_hint(name)}')

    listen: int | None = None
    target_port: int | None = None
    if port_fv is not None:
        try:
            listen, target_port = parse_port(port_fv.text)
        except ValueProblem as exc:
            fail(port_fv, str(exc))
    elif len(facts.exposed) == 1:
        target_port = next(iter(facts.exposed))
    elif scheme_fv is not None and not out.errors:
        count = len(facts.exposed)
        out.errors.append(
            LabelError(
                f"needs a port: the container exposes {count} ports"
                + (f" ({', '.join(str(p) for p in sorted(facts.exposed))})" if count else "")
                + "; set port: [LISTEN:]TARGET",
                container=facts.container,
                alias=alias,
                label=None,
                value=None,
            )
        )

    if scheme is None and target_port is not None:
        scheme = "udp" if facts.exposed.get(target_port) == frozenset({"udp"}) else "tcp"
    schemes = ["tcp", "udp"] if scheme == "tcp+udp" else [scheme] if scheme else []

    values: dict[str, Any] = {}
    health: dict[str, Any] = {}
    for name, fv in known.items():
        conv = CONVERTERS[name]
        if conv is None:
            continue
        attr, func = conv
        try:
            value = func(fv.value if name in LIST_FIELDS else fv.text)
        except ValueProblem as exc:
            fail(fv, str(exc))
            continue
        (health if name.startswith("healthcheck.") else values)[attr] = value
    relay = known.get("relay_proxy_protocol_header")
    if relay is not None:
        try:
            if parse_bool(relay.text):
                values.setdefault("proxy_protocol", "v2")
        except ValueProblem as exc:
            fail(relay, str(exc))
    if values.get("proxy_protocol") and any(s.startswith("udp") for s in schemes):
        fv = known.get("proxy_protocol") or known["relay_proxy_protocol_header"]
        fail(fv, "a PROXY protocol header can be sent on TCP routes only")

    bind: str | None = None
    if "bind" in known:
        try:
            bind = parse_ip(known["bind"].text)
        except ValueProblem as exc:
            fail(known["bind"], str(exc))
    family = {s[-1] for s in schemes if s[-1] in "46"}
    if bind is None:
        bind = facts.default_bind
        if "6" in family and ":" not in bind:
            bind = "::"
        elif "4" in family and ":" in bind:
            bind = "0.0.0.0"
    elif "bind" in known:
        is_v6 = ":" in bind
        if ("4" in family and is_v6) or ("6" in family and not is_v6):
            fail(known["bind"], f"an IPv{'6' if is_v6 else '4'} bind does not fit scheme {scheme}")

    host = facts.target_host
    if "host" in known:
        text = known["host"].text.strip().strip("[]")
        problem = facts.label_host_check(text) if facts.label_host_check else None
        if problem:
            fail(known["host"], problem)
        host = text.lower()
    elif host is None and facts.target_problem:
        out.errors.append(LabelError(facts.target_problem, container=facts.container, alias=alias))
    if "host" not in known and "6" in family and facts.default_host_v6:
        host = facts.default_host_v6

    if facts.remote and target_port is not None and "host" not in known:
        for s in schemes:
            published = facts.published.get((target_port, s[:3]))
            if published is None:
                out.errors.append(
                    LabelError(
                        f"port {target_port}/{s[:3]} is not published on the remote host",
                        container=facts.container,
                        alias=alias,
                    )
                )
            else:
                target_port = published

    if out.errors or target_port is None or host is None:
        return out
    for s in schemes:
        proto_values = {
            k: v
            for k, v in values.items()
            if not (
                (k in TCP_ONLY and s.startswith("udp")) or (k in UDP_ONLY and s.startswith("tcp"))
            )
        }
        out.routes.append(
            RouteSpec(
                alias=alias,
                scheme=cast(Scheme, s),
                bind=bind,
                listen_port=listen,
                target_host=host,
                target_port=target_port,
                origin=facts.origin,
                healthcheck=HealthCheck(**health),
                **proto_values,
            )
        )
    return out
