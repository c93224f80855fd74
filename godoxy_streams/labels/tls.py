"""The TLS fields of a route: ``sni`` (the server names that choose it on a shared socket),
``tls_termination`` and ``tls_client_ca``; and GoDoxy's shared TLS port, where a TCP route is
chosen by its alias (``server_names.alias_pattern``) without an ``sni`` label.

One step of ``fields.build_routes``, after the ports and the other conversions: it checks
that the fields fit together (an SNI route is TCP and names its listen port; termination
only on an SNI route; a client CA only with termination) and turns a client-CA profile name
into the file the operator gave it. A label never names a host file: from labels
``tls_client_ca`` is one of the operator's ``tls_client_cas`` profiles; the static routes
file, written by the operator, may also give an absolute path. Pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from godoxy_streams.labels.precedence import FieldValue
from godoxy_streams.server_names import alias_pattern, patterns_text


class Problems(Protocol):
    """Where a route's errors go (``fields.Problems``)."""

    def label(self, fv: FieldValue, message: str) -> None: ...

    def route(self, message: str) -> None: ...


@dataclass(frozen=True)
class TLSFacts:
    """What the operator configured for TLS routes (never from labels)."""

    tls_port: int | None = None  # GoDoxy's shared TLS port: TCP routes there are SNI routes
    client_cas: Mapping[str, str] | None = None  # profile name -> CA file
    paths_allowed: bool = False  # the static routes file may name a CA file itself


def tls_fields(
    alias: str,
    known: Mapping[str, FieldValue],
    values: dict[str, Any],
    schemes: list[str],
    listen: int | None,
    facts: TLSFacts,
    problems: Problems,
) -> None:
    """Check and complete ``values``' ``sni``, ``tls_termination`` and ``tls_client_ca``."""
    tcp = any(s.startswith("tcp") for s in schemes)
    sni_fv = known.get("sni")
    if sni_fv is not None and not tcp:
        problems.label(sni_fv, "sni applies to TCP routes only")
    elif sni_fv is not None and listen is None and "sni" in values:
        problems.label(sni_fv, "an SNI route needs a LISTEN port (e.g. port: 443:443)")
    elif sni_fv is None and tcp and listen is not None and listen == facts.tls_port:
        _alias_names(alias, known, values, facts.tls_port, problems)
    if "tls_termination" in known and "tls_termination" not in values:
        return  # not a boolean: its own error says so
    terminate = _termination(known, values, tcp, facts, problems)
    _client_ca(known, values, terminate, facts, problems)


def _alias_names(
    alias: str,
    known: Mapping[str, FieldValue],
    values: dict[str, Any],
    tls_port: int,
    problems: Problems,
) -> None:
    """A TCP route on the shared TLS port without ``sni``: chosen by its alias (GoDoxy)."""
    try:
        values["sni"] = patterns_text([alias_pattern(alias)])
    except ValueError:
        where = known.get("port")
        message = (
            f"the alias {alias!r} is no TLS server name, and this route listens on the shared "
            f"TLS port {tls_port} (tls_port), where routes are chosen by name: set sni"
        )
        if where is not None:
            problems.label(where, message)
        else:
            problems.route(message)


def _termination(
    known: Mapping[str, FieldValue],
    values: dict[str, Any],
    tcp: bool,
    facts: TLSFacts,
    problems: Problems,
) -> bool:
    """Whether the route terminates TLS (an error unless it is an SNI route)."""
    fv = known.get("tls_termination")
    if fv is None or not values.get("tls_termination"):
        return False
    if not tcp:
        problems.label(fv, "tls_termination applies to TCP routes only")
    elif not values.get("sni"):
        port = f"tls_port {facts.tls_port}" if facts.tls_port else "tls_port, not set"
        problems.label(
            fv,
            "tls_termination applies to routes chosen by TLS server name only: set sni, "
            f"or listen on the operator's shared TLS port ({port})",
        )
    return True


def _client_ca(
    known: Mapping[str, FieldValue],
    values: dict[str, Any],
    terminate: bool,
    facts: TLSFacts,
    problems: Problems,
) -> None:
    """``tls_client_ca``: a profile name (or, in the routes file, a path) -> the CA file."""
    fv = known.get("tls_client_ca")
    if fv is None:
        return
    if not terminate:
        problems.label(fv, "tls_client_ca needs tls_termination: true")
        return
    name = fv.text.strip()
    profiles = facts.client_cas or {}
    if name in profiles:
        values["tls_client_ca"] = profiles[name]
    elif facts.paths_allowed and name.startswith("/"):
        values["tls_client_ca"] = name
    else:
        known_names = ", ".join(sorted(profiles)) or "none configured"
        problems.label(
            fv,
            f"expected one of the operator's client CA profiles (tls_client_cas: {known_names})"
            + ("" if not facts.paths_allowed else " or an absolute path to a CA file"),
        )
