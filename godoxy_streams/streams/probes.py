"""Active health checks of one upstream: a probe every ``interval``; ``retries`` failures in a
row mark it down, ``rise`` successes in a row mark it up again (hysteresis, as HAProxy's
fall/rise). TCP probes connect and close; UDP probes send a payload and, when one is given,
expect a reply that starts with ``expect``. Docker's own HEALTHCHECK state, when a container
has one, is authoritative and is applied by the caller, not here.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from godoxy_streams.model import HealthCheck
from godoxy_streams.streams.options import DatagramDialer

Probe = Callable[[], Awaitable[None]]


class ProbeFailed(Exception):
    """The upstream did not answer the probe as expected."""


async def tcp_probe(host: str, port: int, timeout: float) -> None:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError) as exc:
        raise ProbeFailed(f"TCP connect to {host}:{port}: {str(exc) or 'timed out'}") from exc
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass


class _Reply(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:
        if not self.answer.done():
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)


async def udp_probe(
    host: str,
    port: int,
    send: bytes,
    expect: bytes | None,
    timeout: float,
    dialer: DatagramDialer | None = None,
) -> None:
    """Send ``send`` from a new socket (or a ``dialer``'s, e.g. an agent's flow); with
    ``expect``, the first reply must start with it."""
    loop = asyncio.get_running_loop()
    if dialer is not None:
        with await dialer(host, port, lambda _: None) as sock:
            sock.send(send)
            if expect is not None:
                await _check_reply(host, port, loop.sock_recv(sock, 65536), expect, timeout)
        return
    transport, protocol = await loop.create_datagram_endpoint(_Reply, remote_addr=(host, port))
    try:
        transport.sendto(send)
        if expect is not None:
            await _check_reply(host, port, protocol.answer, expect, timeout)
    finally:
        transport.close()


async def _check_reply(
    host: str, port: int, reply: Awaitable[bytes], expect: bytes, timeout: float
) -> None:
    try:
        data = await asyncio.wait_for(reply, timeout)
    except (OSError, TimeoutError) as exc:
        raise ProbeFailed(f"UDP probe of {host}:{port}: {str(exc) or 'no reply'}") from exc
    if not data.startswith(expect):
        raise ProbeFailed(f"UDP probe of {host}:{port}: unexpected reply {data[:32]!r}")


class TunnelProbe(Protocol):
    async def probe(self, host: str, port: int, timeout: float) -> None: ...

    async def open_flow(
        self, host: str, port: int, on_lost: Callable[[socket.socket], None]
    ) -> socket.socket: ...


def probe_for(
    proto: str, target: tuple[str, int], check: HealthCheck, tunnel: TunnelProbe | None = None
) -> Probe | None:
    """The probe a route's health check asks for; None when there is nothing to probe (a UDP
    route without a ``send`` payload relies on Docker's health). Through ``tunnel``, a TCP
    probe asks the agent to reach the target, a UDP probe goes through an agent's flow."""
    host, port = target
    if proto == "tcp":
        if tunnel is not None:
            return lambda: tunnel.probe(host, port, check.timeout)
        return lambda: tcp_probe(host, port, check.timeout)
    if check.send is None:
        return None
    send = check.send.encode()
    expect = check.expect.encode() if check.expect is not None else None
    dialer = tunnel.open_flow if tunnel is not None else None
    return lambda: udp_probe(host, port, send, expect, check.timeout, dialer)


@dataclass
class HealthState:
    up: bool = True
    fails: int = 0
    oks: int = 0
    last_error: str | None = None
    changed_at: float = 0.0


class HealthMonitor:
    """Runs one upstream's probe on a schedule and tracks whether it is up."""

    def __init__(
        self,
        probe: Probe,
        check: HealthCheck,
        on_change: Callable[[HealthState], None] | None = None,
    ) -> None:
        self.probe = probe
        self.check = check
        self.on_change = on_change
        self.state = HealthState(changed_at=time.time())

    async def probe_once(self) -> HealthState:
        state = self.state
        try:
            await asyncio.wait_for(self.probe(), self.check.timeout + 1)
        except (ProbeFailed, OSError, TimeoutError) as exc:
            state.fails, state.oks = state.fails + 1, 0
            state.last_error = str(exc) or type(exc).__name__
            if state.up and state.fails >= self.check.retries:
                self._flip(False)
        else:
            state.oks, state.fails = state.oks + 1, 0
            if not state.up and state.oks >= self.check.rise:
                self._flip(True)
        return state

    def _flip(self, up: bool) -> None:
        self.state.up, self.state.changed_at = up, time.time()
        if self.on_change is not None:
            self.on_change(self.state)

    async def run(self) -> None:
        while True:
            await self.probe_once()
            await asyncio.sleep(self.check.interval)
