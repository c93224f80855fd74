"""A stream's plain counters, updated per read batch and read by the runtime's snapshot."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class StreamStats:
    """Plain counters, updated per read batch (not per byte)."""

    active: int = 0  # live connections / sessions
    total: int = 0  # connections accepted / sessions created
    bytes_in: int = 0  # client -> upstream
    bytes_out: int = 0  # upstream -> client
    dial_errors: dict[str, int] = field(default_factory=dict)  # by reason
    refused: int = 0  # refused by the pre_dial hook
    sessions_refused: int = 0  # UDP: session table full
    evicted: int = 0  # UDP: idle sessions ended to make room for new clients
    dropped: int = 0  # UDP: datagrams dropped (socket full, session not ready, errors)
    denied: int = 0  # refused by an access list (UDP: datagrams)
    limited: int = 0  # refused by a cap or rate (UDP: datagrams)
    proxy_errors: int = 0  # PROXY header missing, malformed, late or untrusted
    no_upstream: int = 0  # refused because no pool member was available (UDP: sessions)

    def count_dial_error(self, reason: str) -> None:
        self.dial_errors[reason] = self.dial_errors.get(reason, 0) + 1
