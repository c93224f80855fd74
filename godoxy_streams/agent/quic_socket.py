"""The agent's QUIC socket: one UDP socket for every daemon's connection, read in batches, each
reply sent from the address its client's packets arrived on.

On a wildcard address (the agent's default ``0.0.0.0``) the kernel would pick a reply's source
itself, and a QUIC client drops packets from any address but the one it dialled: a daemon
that reaches the agent at a secondary address would never complete a handshake. So the socket
asks for each datagram's destination (``IP_PKTINFO`` / ``IPV6_PKTINFO``, as the UDP relay's
wildcard listeners do) and sends to that client from it.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from aioquic.asyncio.server import QuicServer

from godoxy_streams.streams.udp_session import ANC_SIZE, Cmsg, enable_pktinfo, reply_cmsg

BATCH = 256  # datagrams read per readiness callback
MAX_DATAGRAM = 65535
SOURCES_MAX = 4096  # clients whose reply source is remembered (the oldest is forgotten first)


class QuicSocket(asyncio.DatagramTransport):
    """The datagram transport ``QuicServer`` sends through."""

    def __init__(self, sock: socket.socket, server: QuicServer) -> None:
        super().__init__()
        self.sock = sock
        self.server = server
        self.sources: dict[Any, Cmsg] = {}  # client address -> the cmsg that sets the source
        self.loop = asyncio.get_running_loop()
        self.closed = False

    def start(self) -> None:
        self.server.connection_made(self)
        self.loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        recvmsg = self.sock.recvmsg
        received = self.server.datagram_received
        sources = self.sources
        for _ in range(BATCH):
            try:
                data, anc, _, addr = recvmsg(MAX_DATAGRAM, ANC_SIZE)
            except BlockingIOError:
                return
            except OSError:
                continue
            cmsg, _ = reply_cmsg(anc)
            if cmsg is not None and sources.get(addr) != cmsg:
                if len(sources) >= SOURCES_MAX:
                    del sources[next(iter(sources))]
                sources[addr] = cmsg
            received(data, addr)
            if self.closed:
                return

    def sendto(self, data: Any, addr: Any = None) -> None:
        cmsg = self.sources.get(addr)
        try:
            if cmsg is None:
                self.sock.sendto(data, addr)
            else:
                self.sock.sendmsg((data,), cmsg, 0, addr)
        except OSError:
            pass  # a full buffer or an unreachable client: as UDP, the packet is lost

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return self.sock
        if name == "sockname":
            return self.sock.getsockname()
        return default

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()

    def abort(self) -> None:
        self.close()


async def bind_quic(host: str, port: int, server: QuicServer) -> QuicSocket:
    """Bind ``host``:``port`` over UDP for ``server``; ``OSError`` when it cannot."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind(address)
        enable_pktinfo(sock)
    except OSError:
        sock.close()
        raise
    transport = QuicSocket(sock, server)
    transport.start()
    return transport
