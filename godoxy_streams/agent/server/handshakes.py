"""Who may start a QUIC handshake with the agent: at most ``HANDSHAKES_MAX`` at once, at most
``PER_SOURCE`` from one address, each for at most ``HANDSHAKE_TIMEOUT`` seconds. A new
connection beyond that is dropped before it costs any state or cryptography (the peer sees
no answer), so a stranger who completes the Retry exchange and then goes silent cannot lock
daemons out for longer than the timeout, nor from more than its share.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from aioquic._buffer import Buffer
from aioquic.asyncio.server import QuicServer
from aioquic.quic.packet import QuicPacketType, pull_quic_header
from loguru import logger

HANDSHAKES_MAX = 64
PER_SOURCE = 4
HANDSHAKE_TIMEOUT = 5.0  # the daemon gives up after 2 s
LONG_HEADER = 0x80  # the first bit of every handshake packet


class Handshakes:
    """The handshakes under way, by client address."""

    def __init__(self) -> None:
        self.by_source: Counter[str] = Counter()
        self.total = 0
        self.dropped = 0  # new connections dropped while full

    def full(self, source: str) -> bool:
        return self.total >= HANDSHAKES_MAX or self.by_source[source] >= PER_SOURCE

    def begin(self, source: str) -> None:
        self.total += 1
        self.by_source[source] += 1

    def end(self, source: str) -> None:
        self.total -= 1
        self.by_source[source] -= 1
        if self.by_source[source] <= 0:
            del self.by_source[source]


class AdmittingQuicServer(QuicServer):
    """aioquic's server, which drops a new connection's first packet while ``handshakes`` is
    full for its source (with Retry on, only an Initial packet with a token starts one)."""

    def __init__(self, *, handshakes: Handshakes, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.handshakes = handshakes

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        if isinstance(data, bytes) and data and data[0] & LONG_HEADER:
            if self.handshakes.full(addr[0]) and self._would_start(data):
                handshakes = self.handshakes
                handshakes.dropped += 1
                if handshakes.dropped % 100 == 1:
                    logger.warning(
                        f"datagram connection from {addr} dropped: {handshakes.total} "
                        f"handshakes under way ({handshakes.dropped} dropped so far)"
                    )
                return
        super().datagram_received(data, addr)

    def _would_start(self, data: bytes) -> bool:
        try:
            header = pull_quic_header(
                Buffer(data=data), host_cid_length=self._configuration.connection_id_length
            )
        except ValueError:
            return False
        return (
            header.packet_type == QuicPacketType.INITIAL
            and bool(header.token)
            and header.destination_cid not in self._protocols
        )
