"""What hooks and access logs learn about one TCP connection or UDP session: its context
(before the dial), the hook types, and its close record (how it went)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from godoxy_streams.streams.sockets import Address, Proto


@dataclass(frozen=True, slots=True)
class ConnContext:
    """What a hook learns about one TCP connection or UDP session."""

    proto: Proto
    client: Address
    local: Address
    target: Address
    stream: str = ""


Hook = Callable[[ConnContext], Awaitable[None] | None]

Outcome = Literal[
    "client_closed",  # the client finished first (FIN or close)
    "upstream_closed",  # the upstream finished first
    "dial_failed",  # the upstream could not be reached (or pre_dial failed)
    "timed_out",  # TCP idle timeout; UDP session expiry
    "denied",  # an access list said no
    "limited",  # a connection cap, per-source cap or per-source rate said no
    "proxy_error",  # PROXY header missing, malformed, late, or sent by an untrusted peer
    "reset",  # either side reset the connection (or failed with an error)
    "shutdown",  # cut by the stream's close (kill, or the end of a drain)
    "refused",  # refused by the pre_dial hook
    "no_upstream",  # no pool member was available
    "evicted",  # UDP: an idle session ended to make room for a new client
]


@dataclass(frozen=True, slots=True)
class ConnRecord:
    """How one TCP connection or UDP session went, for access logs (``serve(on_close=)``)."""

    proto: Proto
    client: Address  # effective client (the PROXY header's source, else the peer)
    peer: Address  # socket peer
    local: Address  # the address the client reached
    target: Address
    bytes_in: int  # client -> upstream
    bytes_out: int  # upstream -> client
    started: float  # time.time() at accept
    duration: float  # seconds
    outcome: Outcome
    stream: str = ""


OnClose = Callable[[ConnRecord], None]


def deliver(on_close: OnClose, record: ConnRecord, log: Any) -> None:
    """Hand a close record over; a failing callback is logged, never raised into the relay."""
    try:
        on_close(record)
    except Exception:
        log.exception("on_close callback failed")
