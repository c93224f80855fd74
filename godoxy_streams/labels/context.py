"""What the label grammar needs to know besides the labels: operator settings and the
container's facts, as frozen data."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

from godoxy_streams.containers import ContainerInfo
from godoxy_streams.labels.tls import TLSFacts

Mode = Literal["docker", "compose", "file"]


@dataclass(frozen=True)
class ParseContext:
    """Operator settings that shape parsing (never taken from labels)."""

    namespace: str = "proxy"
    default_bind: str = "0.0.0.0"
    allowed_targets: tuple[str, ...] = ()
    own_networks: frozenset[str] = field(default_factory=frozenset)
    remote_host: str | None = None
    mode: Mode = "docker"
    tls_port: int | None = None  # GoDoxy's shared TLS port: TCP routes there are SNI routes
    tls_client_cas: tuple[tuple[str, str], ...] = ()  # client CA profiles: (name, CA file)

    def tls_facts(self, *, paths_allowed: bool = False) -> TLSFacts:
        """The operator's TLS settings as the TLS step reads them."""
        return TLSFacts(self.tls_port, dict(self.tls_client_cas), paths_allowed)

    def target_allowed(self, host: str) -> bool:
        """Whether ``host`` (an IP or a name) is in the operator's ``allowed_targets``."""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return host.lower() in (t.lower() for t in self.allowed_targets)
        for entry in self.allowed_targets:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
        return False


def default_alias(info: ContainerInfo) -> str:
    """A name the user chose (docs/labels.md "default alias"): the container's name, unless the
    name was generated from a compose service (``<project>-<service>-<n>``, compose v1's
    ``<project>_<service>_<n>``) or a Swarm task (``<service>.<slot>[.<task id>]``); then the
    service's name, which replicas and re-created containers share."""
    service = info.compose_service
    if service and replica_number(info.name, info.compose_project, service) is not None:
        return service.lower()
    return info.name.lower()


def replica_number(name: str, project: str, service: str) -> str | None:
    """The replica number in a name compose or Swarm generated for ``service`` (``p-svc-2``,
    ``p_svc_2``, ``svc.2[.<task id>]`` -> ``"2"``), or None for a name the user chose.
    Plain string checks: this runs for every container, with a different service each time
    (per-service regular expressions would thrash the ``re`` cache)."""
    low, svc = name.lower(), service.lower()
    if low.startswith(svc + "."):  # Swarm: svc.<n>[.<task id>]
        number, _, task = low[len(svc) + 1 :].partition(".")
        if number.isdigit() and number.isascii() and (not task or _is_word(task)):
            return number
    if project:
        proj = project.lower()
        for sep in ("-", "_"):
            head = f"{proj}{sep}{svc}{sep}"
            number = low[len(head) :]
            if low.startswith(head) and number.isdigit() and number.isascii():
                return number
    return None


def _is_word(text: str) -> bool:
    """What ``\\w+`` matches, for the ASCII names Docker gives."""
    return bool(text) and all(c.isalnum() or c == "_" for c in text)


def display_name(info: ContainerInfo) -> str:
    return info.name
