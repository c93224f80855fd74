"""A naive asyncio TCP/UDP proxy reading the same routes file as `godoxy-streams run`.

Opt-in bench subject ("pyref"): it exercises the harness' "ours" path before the real
command exists and shows what straightforward asyncio (with uvloop when installed) costs.
With ``--certificates-dir`` ("pyref-sni"), a route with ``tls_termination: true`` gets the
loop's own TLS server (``create_server(ssl=...)``, the folder's one certificate) and nothing
more: the least a uvloop + ``ssl`` proxy can spend per terminated connection. Routes that
pass TLS through by server name are skipped (this proxy reads no ClientHello).
Usage: python -m bench.refproxy --routes ROUTES.yml [--certificates-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl
from pathlib import Path
from typing import Any, cast

import yaml

UDP_IDLE_S = 30.0


class _Pipe(asyncio.Protocol):
    """One side of a TCP pair; forwards what it reads to its peer, with flow control."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Pipe | None = None
        self.pending: list[bytes] = []
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None or peer.transport is None:
            self.pending.append(data)
            if self.transport is not None:
                self.transport.pause_reading()
            return
        peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is not None and peer.transport is not None:
            if peer.eof:  # both directions done
                peer.transport.close()
                return False
            if peer.transport.can_write_eof():
                peer.transport.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()
        self.transport = None

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def link(self, peer: _Pipe) -> None:
        self.peer = peer
        if self.pending and peer.transport is not None:
            for chunk in self.pending:
                peer.transport.write(chunk)
            self.pending.clear()
        if self.transport is not None:
            self.transport.resume_reading()
        if self.eof and peer.transport is not None and peer.transport.can_write_eof():
            peer.transport.write_eof()


async def _tcp_route(
    bind: str, port: int, host: str, uport: int, tls: ssl.SSLContext | None = None
) -> asyncio.Server:
    loop = asyncio.get_running_loop()

    async def connect(client: _Pipe) -> None:
        try:
            _, upstream = await loop.create_connection(_Pipe, host, uport)
        except OSError:
            if client.transport is not None:
                client.transport.close()
            return
        upstream = cast(_Pipe, upstream)
        if client.transport is None:
            if upstream.transport is not None:
                upstream.transport.close()
            return
        upstream.link(client)
        client.link(upstream)

    class Client(_Pipe):
        """Dials once connected (with TLS: once the handshake is done)."""

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            loop.create_task(connect(self))

    def factory() -> _Pipe:
        return Client()

    return await loop.create_server(factory, bind, port, backlog=4096, reuse_address=True, ssl=tls)


def _server_context(folder: str) -> ssl.SSLContext:
    """A TLS server context over the folder's one ``NAME.crt``/``NAME.key`` pair."""
    (cert,) = sorted(Path(folder).glob("*.crt"))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, cert.with_suffix(".key"))
    return ctx


class _UpstreamUDP(asyncio.DatagramProtocol):
    def __init__(self, front: _FrontUDP, addr: Any) -> None:
        self.front = front
        self.addr = addr
        self.transport: asyncio.DatagramTransport | None = None
        self.last = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.front.transport is not None:
            self.front.transport.sendto(data, self.addr)


class _FrontUDP(asyncio.DatagramProtocol):
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.transport: asyncio.DatagramTransport | None = None
        self.sessions: dict[Any, _UpstreamUDP] = {}
        self.opening: dict[Any, list[bytes]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        loop = asyncio.get_running_loop()
        sess = self.sessions.get(addr)
        if sess is not None and sess.transport is not None:
            sess.last = loop.time()
            sess.transport.sendto(data)
            return
        if addr in self.opening:
            self.opening[addr].append(data)
            return
        self.opening[addr] = [data]
        loop.create_task(self._open(addr))

    async def _open(self, addr: Any) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, proto = await loop.create_datagram_endpoint(
                lambda: _UpstreamUDP(self, addr), remote_addr=(self.host, self.port)
            )
        except OSError:
            self.opening.pop(addr, None)
            return
        proto = cast(_UpstreamUDP, proto)
        proto.last = loop.time()
        self.sessions[addr] = proto
        for data in self.opening.pop(addr, []):
            if proto.transport is not None:
                proto.transport.sendto(data)

    async def reap(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(5)
            now = loop.time()
            for addr, sess in list(self.sessions.items()):
                if now - sess.last > UDP_IDLE_S and sess.transport is not None:
                    sess.transport.close()
                    del self.sessions[addr]


async def _main(routes_file: str, certificates_dir: str | None) -> None:
    with open(routes_file) as f:
        routes = (yaml.safe_load(f) or {}).get("routes", {})
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    servers: list[asyncio.Server] = []
    transports: list[asyncio.BaseTransport] = []
    tasks: list[asyncio.Task[None]] = []
    for route in routes.values():
        listen, upstream = (int(p) for p in str(route["port"]).split(":"))
        bind, host = route.get("bind", "127.0.0.1"), route["host"]
        if str(route["scheme"]).startswith("udp"):
            front = _FrontUDP(host, upstream)
            tr, _ = await loop.create_datagram_endpoint(
                lambda f=front: f, local_addr=(bind, listen)
            )
            transports.append(tr)
            tasks.append(loop.create_task(front.reap()))
        elif route.get("tls_termination"):
            assert certificates_dir, "a tls_termination route needs --certificates-dir"
            tls = _server_context(certificates_dir)
            servers.append(await _tcp_route(bind, listen, host, upstream, tls))
        elif not route.get("sni"):
            servers.append(await _tcp_route(bind, listen, host, upstream))
    await stop.wait()
    for server in servers:
        server.close()
    for tr in transports:
        tr.close()
    for task in tasks:
        task.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.refproxy")
    parser.add_argument("--routes", required=True)
    parser.add_argument("--certificates-dir")
    args = parser.parse_args()
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        asyncio.run(_main(args.routes, args.certificates_dir))
    else:
        with contextlib.suppress(KeyboardInterrupt):
            uvloop.run(_main(args.routes, args.certificates_dir))


if __name__ == "__main__":
    main()
