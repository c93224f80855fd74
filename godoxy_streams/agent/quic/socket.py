"""The agent's QUIC socket: one UDP socket for every daemon's connection, read in batches, each
reply sent from the address its client's packets arrived on.

On a wildcard address (the agent's default ``0.0.0.0``) the kernel would pick a reply's source
itself, and a QUIC client drops packets from any address but the one it dialled: a daemon
that reaches the agent at a secondary address would never complete a handshake. So the socket
asks for each datagram's destination (``IP_PKTINFO`` / ``IPV6_PKTINFO``, as the UDP relay's
wildcard listeners do). What the server sends while it handles a datagram (a Retry) leaves
from that datagram's destination; a connection takes the destination of the datagram that
created it (``pinned``) and keeps it: nothing a later datagram says changes it.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from aioquic.asyncio.server import QuicServer

from godoxy_streams.streams.udp.pktinfo import ANC_SIZE, Cmsg, enable_pktinfo, reply_cmsg

BATCH = 256  # datagrams read per readiness callback
MAX_DATAGRAM = 65535


class QuicSocket(asyncio.DatagramTransport):
    """The datagram transport ``QuicServer`` sends through."""

    def __init__(self, sock: socket.socket, server: QuicServer) -> None:
        super().__init__()
        self.sock = sock
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.closed = False
        self.current: tuple[Any, Cmsg | None] = (None, None)  # the datagram being handled

    def start(self) -> None:
        self.server.connection_made(self)
        self.loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        recvmsg = self.sock.recvmsg
        received = self.server.datagram_received
        try:
            for _ in range(BATCH):
                try:
                    data, anc, _, addr = recvmsg(MAX_DATAGRAM, ANC_SIZE)
                except BlockingIOError:
                    return
                except OSError:
                    continue
                self.current = (addr, reply_cmsg(anc)[0])
                received(data, addr)
                if self.closed:
                    return
        finally:
            self.current = (None, None)

    def sendto(self, data: Any, addr: Any = None) -> None:
        current, cmsg = self.current
        send(self.sock, data, addr, cmsg if addr == current else None)

    def pinned(self) -> PinnedReplies:
        """A transport for the connection the current datagram creates: its replies leave
        from the address that datagram was sent to."""
        return PinnedReplies(self, self.current[1])

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


class PinnedReplies(asyncio.DatagramTransport):
    """One connection's view of the ``QuicSocket``: sends from a fixed source address."""

    def __init__(self, shared: QuicSocket, cmsg: Cmsg | None) -> None:
        super().__init__()
        self.shared = shared
        self.cmsg = cmsg

    def sendto(self, data: Any, addr: Any = None) -> None:
        send(self.shared.sock, data, addr, self.cmsg)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.shared.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self.shared.closed

    def close(self) -> None:
        """The shared socket outlives every connection."""

    def abort(self) -> None:
        """The shared socket outlives every connection."""


def send(sock: socket.socket, data: Any, addr: Any, cmsg: Cmsg | None) -> None:
    try:
        if cmsg is None:
            sock.sendto(data, addr)
        else:
            sock.sendmsg((data,), cmsg, 0, addr)
    except OSError:
        pass  # a full buffer or an unreachable client: as UDP, the packet is lost


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
