"""Active health probes against real loopback sockets."""

from __future__ import annotations

import asyncio
import socket
from typing import cast

from godoxy_streams.model import HealthCheck
from godoxy_streams.streams.probes import HealthMonitor, HealthState, probe_for

FAST = HealthCheck(interval=0.01, timeout=0.5, retries=2, rise=2)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_tcp_monitor_falls_after_retries_and_rises_after_rise() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    changes: list[bool] = []
    probe = probe_for("tcp", ("127.0.0.1", port), FAST)
    assert probe is not None
    monitor = HealthMonitor(probe, FAST, lambda s: changes.append(s.up))
    assert (await monitor.probe_once()).up
    server.close()
    await server.wait_closed()
    first = await monitor.probe_once()
    assert first.up and first.fails == 1  # one failure is not enough (retries=2)
    second = await monitor.probe_once()
    assert not second.up and "TCP connect" in (second.last_error or "")
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
    assert not (await monitor.probe_once()).up  # one success is not enough (rise=2)
    assert (await monitor.probe_once()).up
    assert changes == [False, True]
    server.close()
    await server.wait_closed()


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(b"pong " + data, addr)


async def test_udp_probe_send_expect() -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_Echo, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        good = HealthCheck(timeout=0.5, retries=1, send="ping", expect="pong")
        probe = probe_for("udp", ("127.0.0.1", port), good)
        assert probe is not None
        assert (await HealthMonitor(probe, good).probe_once()).up
        wrong = HealthCheck(timeout=0.5, retries=1, send="ping", expect="nope")
        probe = probe_for("udp", ("127.0.0.1", port), wrong)
        assert probe is not None
        state: HealthState = await HealthMonitor(probe, wrong).probe_once()
        assert not state.up and "unexpected reply" in (state.last_error or "")
    finally:
        transport.close()
    silent = probe_for("udp", ("127.0.0.1", closed_port()), good)
    assert silent is not None
    assert not (await HealthMonitor(silent, good).probe_once()).up


def test_udp_without_payload_has_no_probe() -> None:
    assert probe_for("udp", ("127.0.0.1", 53), HealthCheck()) is None
