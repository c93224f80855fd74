"""A finished connection is freed when it closes, not left to Python's cyclic garbage
collector: otherwise every connection's objects (uvloop's TLS read buffer among them) live
until the next collection, which then has to walk them."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from pathlib import Path

from godoxy_streams.runtime.certificates import CertificateDirectory, TLSContexts
from godoxy_streams.streams.tcp.relay import Conn, Upstream
from godoxy_streams.streams.tls.direct import DirectTLS, TLSObject
from godoxy_streams.streams.tls.listener import HelloReader
from godoxy_streams.streams.udp.session import Pending, Session

from ..helpers import eventually_async
from ..tls_kit import certificates, client_context, client_hello, install
from .kit import (
    connect,
    echo,
    recv_datagram,
    tcp_backend,
    tcp_stream,
    udp_client,
    udp_echo,
    udp_stream,
)
from .sni_kit import sni_harness, tls_exchange

OURS = (Conn, Upstream, DirectTLS, TLSObject, HelloReader, Session, Pending)
CONNECTIONS = 20


@contextlib.contextmanager
def garbage_kept() -> Iterator[list[object]]:
    """Collect first; then, at the end, what only the cyclic collector would have freed."""
    found: list[object] = []
    gc.collect()
    gc.disable()
    try:
        yield found
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        found.extend(o for o in gc.garbage if isinstance(o, OURS))
    finally:
        gc.garbage.clear()
        gc.set_debug(0)
        gc.enable()


def names(objects: list[object]) -> list[str]:
    return sorted({type(o).__name__ for o in objects})


async def test_relayed_connections_leave_no_cycle() -> None:
    async with tcp_backend(echo()) as backend, tcp_stream(backend.addr) as stream:
        with garbage_kept() as garbage:
            for _ in range(CONNECTIONS):
                reader, writer = await connect(stream.local_addr)
                writer.write(b"ping")
                assert await reader.readexactly(4) == b"ping"
                writer.close()
                await writer.wait_closed()
            await eventually_async(lambda: not stream.conns, 3)
        assert stream.stats.total == CONNECTIONS
    assert names(garbage) == []


async def test_terminated_connections_leave_no_cycle(tmp_path: Path) -> None:
    files = certificates(tmp_path / "made", "mqtt.example.test")
    install(tmp_path / "certs", "mqtt", files)
    contexts = TLSContexts(CertificateDirectory(tmp_path / "certs"))
    contexts.refresh()
    ctx = client_context(files.ca)
    async with tcp_backend(echo()) as backend, sni_harness() as sni:
        stream = sni.add("mqtt", backend.addr, ["mqtt.example.test"], contexts=contexts)
        with garbage_kept() as garbage:
            for _ in range(CONNECTIONS):
                got, _ = await tls_exchange(sni.addr, ctx, "mqtt.example.test", b"ping", 4)
                assert got == b"ping"
            await eventually_async(lambda: not stream.conns, 3)
        assert sni.listener.stats.handshakes == CONNECTIONS
    assert names(garbage) == []


async def test_passed_through_connections_leave_no_cycle() -> None:
    hello = client_hello("a.example.test")
    async with tcp_backend(echo()) as backend, sni_harness() as sni:
        stream = sni.add("a", backend.addr, ["a.example.test"])
        with garbage_kept() as garbage:
            for _ in range(CONNECTIONS):
                reader, writer = await connect(sni.addr)
                writer.write(hello)
                assert await reader.readexactly(len(hello)) == hello  # relayed unchanged
                writer.close()
                await writer.wait_closed()
            await eventually_async(lambda: not stream.conns, 3)
        assert stream.stats.total == CONNECTIONS
    assert names(garbage) == []


async def test_expired_udp_sessions_leave_no_cycle() -> None:
    async with udp_echo() as backend, udp_stream(backend, udp_timeout=0.2) as stream:
        with garbage_kept() as garbage:
            clients = [udp_client(stream.local_addr) for _ in range(CONNECTIONS)]
            try:
                for client in clients:
                    client.send(b"ping")
                    assert (await recv_datagram(client))[0] == b"ping"
            finally:
                for client in clients:
                    client.close()
            await eventually_async(lambda: not stream.sessions, 5)
        assert stream.stats.total == CONNECTIONS
    assert names(garbage) == []
