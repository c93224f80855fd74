"""The field catalog: which route fields are stream fields (and how each converts), which are
GoDoxy's HTTP-only ones, and the step that sorts a route's fields into those kinds. Pure data
and one pure function; no I/O."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from godoxy_streams.labels.grammar import IDLE_WATCHER_LABELS
from godoxy_streams.labels.precedence import FieldValue
from godoxy_streams.labels.values import (
    parse_bool,
    parse_choice,
    parse_duration,
    parse_networks,
    parse_positive_duration,
    parse_positive_int,
    parse_proxy_protocol,
)

SYNONYMS = {
    "healthcheck.disabled": "healthcheck.disable",
    "loadbalance.mode": "load_balance.mode",
}

# field -> (RouteSpec/HealthCheck attribute, converter); None marks fields handled by a step.
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
TCP_ONLY = frozenset({"max_connections", "conn_idle_timeout"})
UDP_ONLY = frozenset({"max_sessions", "udp_timeout"})
LIST_FIELDS = frozenset({"acl.allow", "acl.deny"})
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


@dataclass
class Classified:
    """A route's fields sorted by kind: stream fields by canonical name, GoDoxy's HTTP-only
    labels (to be noted), and unknown names (errors)."""

    known: dict[str, FieldValue] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    unknown: list[tuple[str, FieldValue]] = field(default_factory=list)


def classify(fields: Mapping[str, FieldValue]) -> Classified:
    out = Classified()
    for raw_name, fv in fields.items():
        name = SYNONYMS.get(raw_name, raw_name)
        if name in CONVERTERS:
            out.known[name] = fv
        elif name in HTTP_ONLY or name.split(".")[0] in HTTP_ONLY:
            out.ignored.append(fv.label)
        else:
            out.unknown.append((name, fv))
    return out


def hint(name: str) -> str:
    """A did-you-mean suffix for an unknown field name, or ""."""
    close = difflib.get_close_matches(name, list(CONVERTERS) + list(SYNONYMS), n=1, cutoff=0.6)
    return f'; did you mean "{close[0]}"?' if close else ""
