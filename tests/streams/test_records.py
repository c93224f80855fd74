"""Close records (``serve(on_close=)``) for every outcome, with their byte counts, TCP and
UDP; which connection class a stream picks (the plain relay unless asked for more)."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from typing import Any

import pytest

from godoxy_streams.errors import Refused
from godoxy_streams.streams import ConnContext, ConnRecord, StreamOptions, TCPStream, UDPStream
from godoxy_streams.streams.acl import Acl
from godoxy_streams.streams.limits import ConcurrencyCounter
from godoxy_streams.streams.proxy_protocol import encode_v1
from godoxy_streams.streams.tcp.guard import Guarded
from godoxy_streams.streams.tcp.hooked import HookedConn
from godoxy_streams.streams.tcp.proxy_in import ProxyIn
from godoxy_streams.streams.tcp.records import Counted
from godoxy_streams.streams.tcp.relay import Conn, Upstream

from ..helpers import eventually_async, free_port
from .kit import (
    LOCAL,
    connect,
    echo,
    ended,
    read_all,
    recv_datagram,
    tcp_backend,
    udp_client,
    udp_echo,
)


class Recorder:
    """A TCP or UDP stream serving with ``on_close`` = append to ``records``."""

    def __init__(self, target: tuple[str, int], proto: str = "tcp", **options: Any) -> None:
        cls = TCPStream if proto == "tcp" else UDPStream
        self.stream = cls((LOCAL, 0), target, options=StreamOptions(**options), name="rec")
        self.records: list[ConnRecord] = []

    async def __aenter__(self) -> Recorder:
        await self.stream.serve(on_close=self.records.append, **self.hooks)
        return self

    hooks: dict[str, Any] = {}

    async def __aexit__(self, *exc: object) -> None:
        await self.stream.close(on_stop="kill")

    async def one(self, n: int = 1) -> ConnRecord:
        await eventually_async(lambda: len(self.records) >= n, 5)
        await asyncio.sleep(0)
        assert len(self.records) == n, "a record was made twice"
        return self.records[n - 1]


async def test_client_closed_record_with_bytes_and_addresses() -> None:
    async with tcp_backend(echo()) as backend, Recorder(backend.addr) as rec:
        started = time.time()
        reader, writer = await connect(rec.stream.local_addr, "127.0.0.2")
        writer.write(b"hello")
        assert await reader.readexactly(5) == b"hello"
        writer.write(b"12")
        assert await reader.readexactly(2) == b"12"
        writer.write_eof()
        assert await read_all(reader) == b""
        client = writer.get_extra_info("sockname")[:2]
        writer.close()
        record = await rec.one()
        assert record.target == backend.addr
    assert record.proto == "tcp" and record.stream == "rec"
    assert record.outcome == "client_closed"
    assert (record.bytes_in, record.bytes_out) == (7, 7)
    assert record.client == record.peer == client
    assert record.local == rec.stream.local_addr
    assert started - 1 <= record.started <= time.time()
    assert 0 <= record.duration < 5


async def test_upstream_closed_and_early_bytes_counted() -> None:
    async def banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(3)
        writer.write(b"bye!")
        await writer.drain()

    async with tcp_backend(banner) as backend, Recorder(backend.addr) as rec:
        reader, writer = await connect(rec.stream.local_addr)
        writer.write(b"abc")  # most likely held until the dial completes
        assert await read_all(reader) == b"bye!"
        writer.close()
        record = await rec.one()
    assert record.outcome == "upstream_closed"
    assert (record.bytes_in, record.bytes_out) == (3, 4)


async def test_dial_failed_refused_denied_limited_records() -> None:
    async with Recorder((LOCAL, free_port("tcp"))) as rec:
        reader, writer = await connect(rec.stream.local_addr)
        assert await ended(reader)
        writer.close()
        assert (await rec.one()).outcome == "dial_failed"

    def refuse(ctx: ConnContext) -> None:
        raise Refused("no")

    async with tcp_backend(echo()) as backend:
        rec = Recorder(backend.addr)
        rec.hooks = {"pre_dial": refuse}
        async with rec:
            reader, writer = await connect(rec.stream.local_addr)
            assert await ended(reader)
            writer.close()
            assert (await rec.one()).outcome == "refused"

        async with Recorder(backend.addr, acl=Acl(deny=["127.0.0.3"]), max_connections=1) as rec:
            reader, writer = await connect(rec.stream.local_addr, "127.0.0.3")
            assert await ended(reader)
            writer.close()
            denied = await rec.one()
            assert denied.outcome == "denied"
            assert denied.client[0] == "127.0.0.3"
            assert (denied.bytes_in, denied.bytes_out) == (0, 0)
            r1, w1 = await connect(rec.stream.local_addr, "127.0.0.2")
            w1.write(b"x")
            assert await r1.readexactly(1) == b"x"
            reader, writer = await connect(rec.stream.local_addr, "127.0.0.4")
            assert await ended(reader)
            writer.close()
            assert (await rec.one(2)).outcome == "limited"
            w1.close()
            assert (await rec.one(3)).outcome == "client_closed"
        assert backend.accepted == 1


async def test_proxy_error_record_and_effective_client() -> None:
    async with tcp_backend(echo()) as backend:
        trusted = Acl(allow=[LOCAL])
        async with Recorder(backend.addr, proxy_protocol_trusted=trusted) as rec:
            reader, writer = await connect(rec.stream.local_addr, LOCAL)
            writer.write(b"PROXY nonsense\r\n")
            assert await ended(reader)
            writer.close()
            assert (await rec.one()).outcome == "proxy_error"
            reader, writer = await connect(rec.stream.local_addr, LOCAL)
            writer.write(encode_v1(("10.9.8.7", 4000), ("10.0.0.1", 80)) + b"ping")
            assert await reader.readexactly(4) == b"ping"
            writer.close()
            record = await rec.one(2)
        assert record.client == ("10.9.8.7", 4000)
        assert record.peer[0] == LOCAL
        assert (record.bytes_in, record.bytes_out) == (4, 4)  # the header is not counted


async def test_reset_timed_out_and_shutdown_records() -> None:
    async with tcp_backend(echo()) as backend:
        async with Recorder(backend.addr) as rec:
            reader, writer = await connect(rec.stream.local_addr)
            writer.write(b"r")
            assert await reader.readexactly(1) == b"r"
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            record = await rec.one()
            assert record.outcome == "reset"
            assert (record.bytes_in, record.bytes_out) == (1, 1)

        rec = Recorder(backend.addr, idle_timeout=0.2)
        rec.hooks = {"on_read": lambda ctx: None}  # the hooked classes, recorded
        async with rec:
            assert type(rec.stream.conns) is set
            reader, writer = await connect(rec.stream.local_addr)
            writer.write(b"i")
            assert await reader.readexactly(1) == b"i"
            assert await ended(reader)
            writer.close()
            record = await rec.one()
            assert record.outcome == "timed_out"
            assert (record.bytes_in, record.bytes_out) == (1, 1)
            assert record.duration >= 0.15

        rec = Recorder(backend.addr)
        await rec.__aenter__()
        reader, writer = await connect(rec.stream.local_addr)
        writer.write(b"s")
        assert await reader.readexactly(1) == b"s"
        await rec.stream.close(on_stop="kill")
        assert (await rec.one()).outcome == "shutdown"
        writer.close()


async def test_udp_session_records() -> None:
    async with udp_echo() as backend:
        rec = Recorder(backend, "udp", udp_timeout=0.2)
        async with rec:
            with udp_client(rec.stream.local_addr, source="127.0.0.2") as client:
                for payload in (b"one", b"three"):
                    client.send(payload)
                    assert (await recv_datagram(client))[0] == payload
                record = await rec.one()  # it expires
                assert record.proto == "udp"
                assert record.outcome == "timed_out"
                assert (record.bytes_in, record.bytes_out) == (8, 8)
                assert record.client == record.peer == client.getsockname()[:2]
                assert record.target == backend
                assert record.local == rec.stream.local_addr
                client.send(b"again")
                assert (await recv_datagram(client))[0] == b"again"
        record = await rec.one(2)  # closed with the stream
        assert record.outcome == "shutdown"
        assert (record.bytes_in, record.bytes_out) == (5, 5)


def _noop(_: object) -> None:
    pass


@pytest.mark.parametrize(
    ("options", "hooks", "layers"),
    [
        ({}, {}, set()),
        ({"idle_timeout": 5.0}, {}, {HookedConn}),
        ({"acl": Acl(allow=[LOCAL])}, {}, {Guarded}),
        ({"global_limit": ConcurrencyCounter(9)}, {}, {Guarded}),
        ({"per_source_max": 3}, {"on_read": _noop}, {Guarded, HookedConn}),
        ({"proxy_protocol_trusted": Acl(allow=["10.0.0.0/8"])}, {}, {Guarded, ProxyIn}),
        ({}, {"on_close": _noop}, {Guarded, Counted}),
        ({"max_connections": 9}, {"on_close": _noop, "pre_dial": _noop}, {Counted, HookedConn}),
    ],
)
async def test_connection_class_per_options(
    options: dict[str, Any], hooks: dict[str, Any], layers: set[type]
) -> None:
    """No options: the plain relay classes. Otherwise only the layers the options need."""
    async with tcp_backend(echo()) as backend:
        stream = TCPStream((LOCAL, 0), backend.addr, options=StreamOptions(**options))
        await stream.serve(**hooks)
        try:
            reader, writer = await connect(stream.local_addr)
            writer.write(b"c")
            assert await reader.readexactly(1) == b"c"
            (conn,) = stream.conns
            if not layers:
                assert type(conn) is Conn
                assert type(conn.up) is Upstream
            if layers == {HookedConn}:
                assert type(conn) is HookedConn
            for layer in (Guarded, ProxyIn, Counted, HookedConn):
                assert isinstance(conn, layer) == (
                    layer in layers or layer is Guarded and bool(layers & {Counted, ProxyIn})
                )
            assert not hasattr(conn, "__dict__")
            writer.close()
        finally:
            await stream.close(on_stop="kill")


class _FakeTransport:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> None:
        return None


def test_upstream_made_after_the_connection_ended_is_not_counted() -> None:
    """The client leaves while the dial completes (connection_made already scheduled): the
    late upstream is closed and its loss does not end the connection a second time."""
    stream = TCPStream((LOCAL, 0), (LOCAL, 9))
    conn = Conn(stream)
    conn.transport = _FakeTransport()  # type: ignore[assignment]
    conn.dialing = None
    stream.conns.add(conn)
    stream.stats.active = 1
    conn.connection_lost(None)
    assert stream.stats.active == 0
    late = _FakeTransport()
    conn.upstream_made(late)  # type: ignore[arg-type]
    assert late.closed
    conn.upstream_lost(None)
    assert stream.stats.active == 0
