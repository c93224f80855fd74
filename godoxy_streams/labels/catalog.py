"""The field catalog: which route fields are stream fields (and how each converts), which are
GoDoxy's HTTP-only ones, and the step that sorts a route's fields into those kinds. Pure data
and one pure function; no I/O."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from godoxy_streams.labels.grammar import IDLE_WATCHER_LABELS, squash
from godoxy_streams.labels.precedence import FieldValue
from godoxy_streams.labels.values import (
    parse_bool,
    parse_choice,
    parse_duration,
    parse_networks,
    parse_positive_duration,
    parse_positive_int,
    parse_proxy_protocol,
    parse_server_names,
)

SYNONYMS = {"healthcheck.disabled": "healthcheck.disable"}

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
    "sni": ("sni", parse_server_names),
    "tls_termination": ("tls_termination", parse_bool),
    "tls_client_ca": None,
}
# RouteSpec attributes that only a TCP (or only a UDP) route of a declaration gets
TCP_ONLY = frozenset(
    {"max_connections", "conn_idle_timeout", "sni", "tls_termination", "tls_client_ca"}
)
UDP_ONLY = frozenset({"max_sessions", "udp_timeout"})
LIST_FIELDS = frozenset({"acl.allow", "acl.deny", "sni"})

# GoDoxy route fields that mean nothing to a stream (its ``route.Route``, ``HTTPConfig``,
# ``HealthCheckConfig`` and ``loadbalancer.Config``): noted and ignored. A name here covers
# everything below it (``middlewares.*``, ``load_balance.options.*``).
HTTP_ONLY = frozenset(
    {
        "root",
        "spa",
        "index",
        "no_tls_verify",
        "response_header_timeout",
        "max_conns_per_host",
        "disable_compression",
        "ssl_server_name",
        "ssl_trusted_certificate",
        "ssl_certificate",
        "ssl_certificate_key",
        "ssl_protocols",
        "rules",
        "rule_file",
        "middlewares",
        "homepage",
        "access_log",
        "path_patterns",
        "proxmox",
        "idlewatcher",
        "healthcheck.path",
        "healthcheck.use_get",
        "load_balance.link",
        "load_balance.weight",
        "load_balance.sticky",
        "load_balance.sticky_max_age",
        "load_balance.options",
    }
    | IDLE_WATCHER_LABELS
)
# GoDoxy fields that would change what a stream route lets through if dropped: an error on a
# stream route when set (``fields.guarded_fields`` says why), ignored on an HTTP route.
GUARDED = frozenset({"inbound_mtls_profile", "agent"})


_STREAM = {squash(n): n for n in CONVERTERS} | {squash(k): v for k, v in SYNONYMS.items()}
_GUARDED = {squash(n): n for n in GUARDED}
_HTTP = {squash(n): n for n in HTTP_ONLY}


@dataclass
class Classified:
    """A route's fields sorted by kind: stream and guarded fields by canonical name, GoDoxy's
    HTTP-only labels (to be noted), and unknown names (errors)."""

    known: dict[str, FieldValue] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    unknown: list[tuple[str, FieldValue]] = field(default_factory=list)


def http_root(name: str) -> str | None:
    """The GoDoxy HTTP-only field ``name`` is or lies under, or None."""
    parts = squash(name).split(".")
    for end in range(len(parts), 0, -1):
        found = _HTTP.get(".".join(parts[:end]))
        if found:
            return found
    return None


def classify(fields: Mapping[str, FieldValue]) -> Classified:
    """Sort a route's fields: stream fields and guarded ones by canonical name, HTTP-only
    labels (one display name per label and HTTP field), unknown names. Empty values are no
    label at all."""
    out = Classified()
    for raw_name, fv in fields.items():
        if not fv.text.strip():
            continue
        key = squash(raw_name)
        name = _STREAM.get(key) or _GUARDED.get(key)
        if name:
            out.known[name] = fv
        elif http_root(raw_name):
            shown = _shown_label(fv.label)
            if shown not in out.ignored:
                out.ignored.append(shown)
        else:
            out.unknown.append((raw_name, fv))
    return out


def _shown_label(label: str) -> str:
    """``proxy.app[middlewares.cidr_whitelist.allow]`` -> ``proxy.app[middlewares]``: one note
    per HTTP field of a YAML block, not one per leaf."""
    base, bracket, sub = label.partition("[")
    return f"{base}[{sub.split('.')[0].rstrip(']')}]" if bracket else label


def hint(name: str) -> str:
    """A did-you-mean suffix for an unknown field name (a stream field first), or ""."""
    for names in ([*CONVERTERS, *SYNONYMS], [*GUARDED, *HTTP_ONLY]):
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
        if close:
            return f'; did you mean "{close[0]}"?'
    return ""
