"""What a shared TLS socket routes to and counts, and what waits on it: the vocabulary of
``listener`` and ``direct``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from godoxy_streams.server_names import NamePattern
from godoxy_streams.streams.tls.terminate import ServerContexts

if TYPE_CHECKING:
    from godoxy_streams.streams.tcp.stream import TCPStream


@dataclass(frozen=True, eq=False)
class SNIRoute:
    """A route on a shared socket: its stream, its names, and how it terminates TLS."""

    stream: TCPStream
    names: tuple[NamePattern, ...]
    contexts: ServerContexts | None = None  # set: terminate TLS with these certificates
    client_ca: str | None = None  # terminating: clients need a certificate from this CA


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a ClientHello gets no route: the kind counted and logged, the detail, the alert."""

    kind: str
    detail: str
    description: int


class PendingHello(Protocol):
    """A connection waiting for its ClientHello (``HelloReader``, ``direct.DirectTLS``)."""

    source: str | None  # the key it counts under while pending (``pending.PendingHellos``)

    def timed_out(self) -> None: ...

    def drop(self) -> None: ...


@dataclass(slots=True)
class SNIStats:
    accepted: int = 0
    routed: int = 0  # handed to a route
    no_match: int = 0  # no route for the name: alert unrecognized_name
    not_tls: int = 0  # the first bytes are not TLS (SSLv2-style hellos included)
    malformed: int = 0  # a broken, truncated or oversized ClientHello
    timed_out: int = 0  # no complete ClientHello within hello_timeout
    empty: int = 0  # closed before sending a byte (port probes; ``direct``: before a whole hello)
    overloaded: int = 0  # refused: too many ClientHellos being read (in all, or from one source)
    handshakes: int = 0  # terminated handshakes completed
    handshake_failed: int = 0  # terminated handshakes that failed or timed out
    no_certificate: int = 0  # terminating route without a usable certificate for the name
