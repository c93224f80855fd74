"""An SNI listener with routes for the data-plane tests, and TLS clients over asyncio streams
(including one driven through a MemoryBIO, to send its ClientHello in pieces)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Sequence
from typing import Any

from godoxy_streams.server_names import Conflict, NamePattern, sni_pattern
from godoxy_streams.streams import OnClose, StreamOptions, TCPStream
from godoxy_streams.streams.tls.listener import SNIListener
from godoxy_streams.streams.tls.routing import SNIRoute
from godoxy_streams.streams.tls.terminate import ServerContexts

from ..helpers import eventually_async
from .kit import LOCAL, connect, ended


class SNIHarness:
    """A serving ``SNIListener`` and the routes added to it (each a prepared stream)."""

    def __init__(self, listener: SNIListener) -> None:
        self.listener = listener
        self.routes: list[SNIRoute] = []
        self.conflicts: list[Conflict[SNIRoute]] = []

    @property
    def addr(self) -> tuple[str, int]:
        return self.listener.local_addr

    def add(
        self,
        name: str,
        target: tuple[str, int],
        names: Sequence[str | NamePattern],
        *,
        contexts: ServerContexts | None = None,
        client_ca: str | None = None,
        on_close: OnClose | None = None,
        **options: Any,
    ) -> TCPStream:
        stream = TCPStream(self.addr, target, options=StreamOptions(**options), name=name)
        stream.prepare(on_close=on_close)
        patterns = tuple(n if isinstance(n, NamePattern) else sni_pattern(n) for n in names)
        self.routes.append(SNIRoute(stream, patterns, contexts, client_ca))
        self.conflicts = self.listener.set_routes(self.routes)
        return stream


@contextlib.asynccontextmanager
async def sni_harness(**listener_options: Any) -> AsyncIterator[SNIHarness]:
    listener = SNIListener((LOCAL, 0), name="sni", **listener_options)
    await listener.serve()
    harness = SNIHarness(listener)
    try:
        yield harness
    finally:
        await listener.close()
        for route in harness.routes:
            await route.stream.close(on_stop="kill")


def no_verify() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def tls_exchange(
    addr: tuple[str, int], ctx: ssl.SSLContext, name: str | None, payload: bytes, reply: int
) -> tuple[bytes, Any]:
    """Connect with TLS (SNI ``name``; None sends none), send ``payload``, read ``reply``
    bytes; returns them and the server certificate the client saw."""
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection(
            addr[0], addr[1], ssl=ctx, server_hostname=name or ""
        )
        try:
            cert = writer.get_extra_info("peercert")
            writer.write(payload)
            return await reader.readexactly(reply), cert
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()


def san(cert: Any) -> list[str]:
    return [value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]


class BIOClient:
    """A TLS client whose records pass through our hands: ``hello`` is its first flight,
    sent by the caller in any pieces; ``finish`` completes the handshake over the stream."""

    def __init__(self, ctx: ssl.SSLContext, name: str) -> None:
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname=name)
        with contextlib.suppress(ssl.SSLWantReadError):
            self.obj.do_handshake()
        self.hello = self.outgoing.read()

    async def finish(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self.flush(writer)
                await self.receive(reader)
        await self.flush(writer)

    async def exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes, n: int
    ) -> bytes:
        self.obj.write(data)
        await self.flush(writer)
        got = b""
        while len(got) < n:
            try:
                got += self.obj.read(n - len(got))
            except ssl.SSLWantReadError:
                await self.receive(reader)
        return got

    async def flush(self, writer: asyncio.StreamWriter) -> None:
        out = self.outgoing.read()
        if out:
            writer.write(out)
            await writer.drain()

    async def receive(self, reader: asyncio.StreamReader) -> None:
        data = await reader.read(1 << 16)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.incoming.write(data)


async def assert_pending_caps(sni: SNIHarness) -> None:
    """With ``max_pending=2, max_pending_per_source=1``: a second connection from one source,
    and a third in all, are refused at once (``overloaded``); the caps empty as they go."""
    pending = sni.listener.pending
    _, first = await connect(sni.addr)
    await eventually_async(lambda: len(pending) == 1, 3)
    reader, second = await connect(sni.addr)  # same source
    assert await ended(reader)
    _, third = await connect(sni.addr, source="127.0.0.2")
    await eventually_async(lambda: len(pending) == 2, 3)
    reader, fourth = await connect(sni.addr, source="127.0.0.3")  # over the total
    assert await ended(reader)
    assert sni.listener.stats.overloaded == 2
    for writer in (first, second, third, fourth):
        writer.close()
    await eventually_async(lambda: not pending and not pending.by_source, 3)
