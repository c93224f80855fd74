"""The daemon's side of the agent's datagram channel: UDP flows to destinations on the
agent's host, all carried by one QUIC connection per agent (made on first use, again after
it is lost, kept alive by pings while flows are open), numbered by this end.

``DatagramTunnel.open`` gives a UDP session what a connected UDP socket would: a datagram
socket (one end of a socket pair) whose sends reach the destination and whose reads are
its replies; closing it ends the flow. So the session relay is the same code with or
without an agent. When the flow ends from the agent's side (or its connection is lost),
``on_lost`` is called with that socket, so the session ends too and the client's next
datagram opens a new flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import HandshakeCompleted, QuicEvent

from godoxy_streams.agent.header import StreamHeader
from godoxy_streams.agent.quic import ANSWER, DATA, END, OPEN, FlowLink, flow_prefix

OnLost = Callable[[socket.socket], None]
# A connect attempt whose first packet is lost does not recover (aioquic's handshake probes
# carry no ClientHello), so attempts are short and the next one starts afresh.
CONNECT_TIMEOUT = 2.0
ANSWER_TIMEOUT = 5.0  # for the agent's ANSWER to an OPEN
RETRY_AFTER = 1.0  # after a failed connect, new flows fail at once for this long
CLOSE_TIMEOUT = 2.0
KEEPALIVE = 15.0  # seconds between pings while flows are open (the idle timeout is 60)
BATCH = 256  # datagrams read from a session's socket per readiness callback
BUFFER = 1 << 20  # socket-pair buffer each way (the kernel may cap it)
FLOW_NUMBERS = 1 << 32  # flows one connection can number; then the next connection is made


class FlowSocket(socket.socket):
    """The session's end of a flow: closing it ends the flow."""

    __slots__ = ("flow",)
    flow: Flow | None

    def close(self) -> None:
        flow = getattr(self, "flow", None)
        if flow is not None:
            self.flow = None
            flow.finish()
        super().close()


class Flow:
    """One flow: the tunnel's end of the socket pair, and the flow number it travels under."""

    def __init__(self, link: DaemonLink, number: int, on_lost: OnLost) -> None:
        self.link = link
        self.number = number
        self.prefix = flow_prefix(number)
        self.on_lost = on_lost
        self.answer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for sock in (ours, theirs):
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER)
        self.sock = ours
        self.session_end = FlowSocket(socket.AF_UNIX, socket.SOCK_DGRAM, fileno=theirs.detach())
        self.session_end.flow = self
        self.open = True

    def answered(self) -> None:
        """The agent reached the destination: relay from now on."""
        if not self.answer.done():
            self.answer.set_result(None)
            asyncio.get_running_loop().add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        recv = self.sock.recv
        send = self.link.send_datagram
        for _ in range(BATCH):
            try:
                data = recv(65535)
            except BlockingIOError:
                return
            except OSError:
                continue
            send(self.number, self.prefix, data)

    def deliver(self, payload: bytes) -> None:
        try:
            self.sock.send(payload)
        except OSError:
            self.link.dropped += 1  # the session is not reading fast enough

    def finish(self) -> None:
        """The session closed its end: end the flow (END tells the agent)."""
        if self._stop():
            self.link.end_flow(self.number)

    def lost(self, why: str = "the agent refused the destination or could not reach it") -> None:
        """The agent ended the flow, or the connection is gone: end the session too."""
        if not self.answer.done():
            self.answer.set_exception(ConnectionRefusedError(why))
        if self._stop():
            self.on_lost(self.session_end)

    def _stop(self) -> bool:
        if not self.open:
            return False
        self.open = False
        if self.answer.done() and self.answer.exception() is None:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()
        return True


class DaemonLink(FlowLink):
    """The daemon's QUIC connection to one agent."""

    def __init__(self, quic: QuicConnection, **kwargs: Any) -> None:
        super().__init__(quic)
        self.ready: asyncio.Future[None] = self._loop.create_future()  # the handshake's end
        self.flows: dict[int, Flow] = {}
        self._next = 0
        self._keepalive: asyncio.TimerHandle | None = None

    def open_flow(self, header: StreamHeader, on_lost: OnLost) -> Flow:
        raw = header.encode()
        number, self._next = self._next, self._next + 1
        flow = self.flows[number] = Flow(self, number, on_lost)
        self.send_message(OPEN, number, raw)
        if self._keepalive is None:
            self._keepalive = self._loop.call_later(KEEPALIVE, self._ping)
        return flow

    @property
    def spent(self) -> bool:
        """Every flow number is used: new flows go on a new connection."""
        return self._next >= FLOW_NUMBERS

    def end_flow(self, number: int) -> None:
        if self.flows.pop(number, None) is not None and not self._closed.is_set():
            self.send_message(END, number)
            self._close_when_spent()

    def _close_when_spent(self) -> None:
        if self.spent and not self.flows:
            self.close()

    def _ping(self) -> None:
        self._keepalive = None
        if self.flows and not self._closed.is_set():
            self._quic.send_ping(0)
            self.transmit()
            self._keepalive = self._loop.call_later(KEEPALIVE, self._ping)

    def on_datagram(self, number: int, payload: bytes) -> None:
        flow = self.flows.get(number)
        if flow is not None and flow.answer.done():
            flow.deliver(payload)

    def on_message(self, kind: int, number: int, body: bytes) -> None:
        if kind == DATA:
            self.on_datagram(number, body)
            return
        flow = self.flows.get(number)
        if flow is None:
            return  # a flow this end has ended already
        if kind == ANSWER:
            flow.answered()
        elif kind == END:
            del self.flows[number]
            flow.lost()
            self._close_when_spent()
        else:
            self.protocol_error(f"unexpected control message type {kind}")

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, HandshakeCompleted) and not self.ready.done():
            self.ready.set_result(None)
        super().quic_event_received(event)

    def on_terminated(self, why: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionRefusedError(why))
            self.ready.exception()  # retrieved: whoever waited has been told, or gave up
        if self._keepalive is not None:
            self._keepalive.cancel()
        for flow in self.flows.values():
            flow.lost(f"the agent's connection ended: {why}")
        self.flows.clear()


class DatagramTunnel:
    """Flows to one agent's destinations."""

    def __init__(self, host: str, port: int, configuration: QuicConfiguration) -> None:
        self.host, self.port = host, port
        self.configuration = configuration
        self._link: DaemonLink | None = None
        self._watches: set[asyncio.Task[None]] = set()
        self._connecting = asyncio.Lock()
        self._failed: tuple[float, str] | None = None  # when the last connect failed, why

    async def _connected(self) -> DaemonLink:
        async with self._connecting:
            link = self._link
            if link is not None and not link._closed.is_set() and not link.spent:
                return link
            loop = asyncio.get_running_loop()
            if self._failed is not None and loop.time() - self._failed[0] < RETRY_AFTER:
                # Sessions that wait here fail at once, not CONNECT_TIMEOUT each in turn.
                raise ConnectionRefusedError(self._failed[1])
            quic = QuicConnection(configuration=self.configuration)
            _, link = await loop.create_datagram_endpoint(
                lambda: DaemonLink(quic), remote_addr=(self.host, self.port)
            )
            watch = asyncio.ensure_future(self._forget(link))
            self._watches.add(watch)
            watch.add_done_callback(self._watches.discard)
            try:
                link.connect((self.host, self.port))
                await asyncio.wait_for(asyncio.shield(link.ready), CONNECT_TIMEOUT)
            except (ConnectionError, TimeoutError) as exc:
                why = f"agent {self.host}:{self.port} (QUIC): {str(exc) or 'no answer'}"
                self._failed = (loop.time(), why)
                link.close()
                raise ConnectionRefusedError(why) from exc
            except BaseException:
                link.close()
                raise
            self._failed = None
            self._link = link
            return link

    async def _forget(self, link: DaemonLink) -> None:
        """Once a connection has ended: forget it, close its socket."""
        try:
            await link.wait_closed()
        finally:
            if self._link is link:
                self._link = None
            if link._transport is not None:
                link._transport.close()

    async def open(self, host: str, port: int, on_lost: OnLost) -> socket.socket:
        """A datagram socket whose traffic is the flow to (host, port); ``OSError`` (e.g.
        ``ConnectionRefusedError``) when the agent cannot be reached or refuses it."""
        link = await self._connected()
        flow = link.open_flow(StreamHeader(host, port), on_lost)
        try:
            await asyncio.wait_for(asyncio.shield(flow.answer), ANSWER_TIMEOUT)
        except BaseException:
            flow.session_end.close()
            raise
        return flow.session_end

    async def close(self) -> None:
        link = self._link
        if link is not None:
            link.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(link.wait_closed(), CLOSE_TIMEOUT)
        for watch in list(self._watches):
            watch.cancel()
