"""The daemon's side of the agent's datagram channel: UDP flows to destinations on the
agent's host, all carried by one QUIC connection per agent (made on first use, again after
it is lost, kept alive by pings while flows are open), numbered by this end.

``DatagramTunnel.open`` gives a UDP session what a connected UDP socket would: a datagram
socket (one end of a socket pair) whose sends reach the destination and whose reads are
its replies; closing it ends the flow. So the session relay is the same code with or
without an agent. When the flow ends from the agent's side (or its connection is lost),
``on_lost`` is called with that socket, so the session ends too and the client's next
datagram opens a new flow.

An agent that vanished without closing its connection (killed, its host cut off) sends no
QUIC close: a flow whose ANSWER is late makes the daemon ping the connection, and a
connection that does not answer the ping is closed (its flows and their sessions end), so
the next flow connects afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import HandshakeCompleted, PingAcknowledged, QuicEvent

from godoxy_streams.agent.quic.flow_link import FlowLink, SocketFlow
from godoxy_streams.agent.wire.flow_wire import ANSWER, END, OPEN
from godoxy_streams.agent.wire.header import StreamHeader

OnLost = Callable[[socket.socket], None]
# A connect attempt whose first packet is lost does not recover (aioquic's handshake probes
# carry no ClientHello), so attempts are short and the next one starts afresh.
CONNECT_TIMEOUT = 2.0
ANSWER_TIMEOUT = 5.0  # for the agent's ANSWER to an OPEN
SUSPECT_AFTER = 1.0  # an ANSWER this late makes the daemon ping the connection...
PING_TIMEOUT = 1.0  # ...which is closed unless the ping is answered this fast
RETRY_AFTER = 1.0  # after a failed connect, new flows fail at once for this long
CLOSE_TIMEOUT = 2.0
KEEPALIVE = 10.0  # seconds between pings while flows are open (the idle timeout is 30)
BUFFER = 1 << 20  # socket-pair buffer each way (the kernel may cap it)
FLOW_NUMBERS = 1 << 32  # flows one connection can number; then the next connection is made
PING_UID = 1  # the keepalive's pings are 0
IDLE_MARGIN = 5.0  # a connection this close to its idle timeout is not given new flows


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


class Flow(SocketFlow):
    """One flow: the tunnel's end of the socket pair (its ``sock``), the session's end
    (``session_end``), and the agent's answer."""

    __slots__ = ("on_lost", "answer", "session_end", "open")

    def __init__(self, link: DaemonLink, number: int, on_lost: OnLost) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for sock in (ours, theirs):
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER)
        super().__init__(link, number, ours)
        self.on_lost = on_lost
        self.answer: asyncio.Future[None] = link._loop.create_future()
        self.session_end = FlowSocket(socket.AF_UNIX, socket.SOCK_DGRAM, fileno=theirs.detach())
        self.session_end.flow = self
        self.open = True

    def answered(self) -> None:
        """The agent reached the destination: relay from now on."""
        if not self.answer.done():
            self.answer.set_result(None)
            self.start()

    def finish(self) -> None:
        """The session closed its end: send what it wrote last, then end the flow (END tells
        the agent)."""
        if self.reading and self.open:
            self.limit = 1 << 30
            self.readable()
        if self._stop():
            assert isinstance(self.link, DaemonLink)
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
        self.close()
        return True


class DaemonLink(FlowLink):
    """The daemon's QUIC connection to one agent."""

    def __init__(self, quic: QuicConnection, **kwargs: Any) -> None:
        super().__init__(quic)
        self.ready: asyncio.Future[None] = self._loop.create_future()  # the handshake's end
        self.flows: dict[int, Flow] = {}
        self._next = 0
        self._keepalive: asyncio.TimerHandle | None = None
        self._pong: asyncio.Future[None] | None = None  # the answer to ``check``'s ping

    @property
    def usable(self) -> bool:
        """Neither ended nor ending (a close sent or received), not about to idle out (the
        agent's idle clock started first: it may have dropped the connection already), with
        flow numbers left."""
        quic = self._quic
        idle_at = quic._close_at
        return (
            quic._close_event is None
            and (idle_at is None or idle_at - self._loop.time() > IDLE_MARGIN)
            and self._next < FLOW_NUMBERS
        )

    def open_flow(self, header: StreamHeader, on_lost: OnLost) -> Flow:
        raw = header.encode()
        number, self._next = self._next, self._next + 1
        flow = self.flows[number] = Flow(self, number, on_lost)
        self.send_message(OPEN, number, raw)
        if self._keepalive is None:
            self._keepalive = self._loop.call_later(KEEPALIVE, self._ping)
        return flow

    def end_flow(self, number: int) -> None:
        if self.flows.pop(number, None) is not None and not self._closed.is_set():
            self.send_message(END, number)
            self._close_when_spent()

    def _close_when_spent(self) -> None:
        if self._next >= FLOW_NUMBERS and not self.flows:
            self.close()

    def _ping(self) -> None:
        self._keepalive = None
        if self.flows and not self._closed.is_set():
            self._quic.send_ping(0)
            self.transmit()
            self._keepalive = self._loop.call_later(KEEPALIVE, self._ping)

    async def check(self) -> None:
        """Close this connection unless a ping is answered within ``PING_TIMEOUT``."""
        if not self.usable:
            return
        if self._pong is None or self._pong.done():
            self._pong = self._loop.create_future()
            self._quic.send_ping(PING_UID)
            self.transmit()
        try:
            await asyncio.wait_for(asyncio.shield(self._pong), PING_TIMEOUT)
        except TimeoutError:
            self.close(reason_phrase="the agent does not answer")

    def on_datagram(self, number: int, payload: bytes) -> None:
        flow = self.flows.get(number)
        if flow is not None and flow.reading:
            flow.deliver(payload)

    def on_message(self, kind: int, number: int, body: bytes) -> None:
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
        if not self.ready.done() and isinstance(event, HandshakeCompleted):
            self.ready.set_result(None)
        elif isinstance(event, PingAcknowledged) and self._pong and not self._pong.done():
            self._pong.set_result(None)
        super().quic_event_received(event)

    def on_terminated(self, why: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionRefusedError(why))
            self.ready.exception()  # retrieved: whoever waited has been told, or gave up
        if self._keepalive is not None:
            self._keepalive.cancel()
        flows = list(self.flows.values())
        self.flows.clear()
        for flow in flows:
            flow.lost(f"the agent's connection ended: {why}")


class DatagramTunnel:
    """Flows to one agent's destinations."""

    def __init__(self, host: str, port: int, configuration: QuicConfiguration) -> None:
        self.host, self.port = host, port
        self.configuration = configuration
        self._link: DaemonLink | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._connecting = asyncio.Lock()
        self._failed: tuple[float, str] | None = None  # when the last connect failed, why
        self.dropped_before = 0  # datagrams dropped by connections that have ended

    def view(self) -> dict[str, object]:
        """The channel's state, for ``/healthz``."""
        link = self._link
        return {
            "connected": link is not None and link.usable,
            "flows_open": len(link.flows) if link is not None else 0,
            "dropped": self.dropped_before + (link.dropped if link is not None else 0),
            "last_error": self._failed[1] if self._failed is not None else None,
        }

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connected(self) -> DaemonLink:
        async with self._connecting:
            link = self._link
            if link is not None and link.usable:
                return link
            loop = asyncio.get_running_loop()
            if self._failed is not None and loop.time() - self._failed[0] < RETRY_AFTER:
                # Sessions that wait here fail at once, not CONNECT_TIMEOUT each in turn.
                raise ConnectionRefusedError(self._failed[1])
            try:
                link = await self._connect()
            except Exception as exc:
                why = f"agent {self.host}:{self.port} (QUIC): {str(exc) or 'no answer'}"
                self._failed = (loop.time(), why)
                raise ConnectionRefusedError(why) from exc
            self._failed = None
            self._link = link
            return link

    async def _connect(self) -> DaemonLink:
        loop = asyncio.get_running_loop()
        infos = await asyncio.wait_for(
            loop.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM), CONNECT_TIMEOUT
        )
        address: Any = infos[0][4]  # aioquic must be given the very address the socket dials
        quic = QuicConnection(configuration=self.configuration)
        _, link = await loop.create_datagram_endpoint(
            lambda: DaemonLink(quic), remote_addr=address[:2]
        )
        self._spawn(self._forget(link))
        try:
            link.connect(address)
            await asyncio.wait_for(asyncio.shield(link.ready), CONNECT_TIMEOUT)
        except BaseException:
            link.close()
            raise
        return link

    async def _forget(self, link: DaemonLink) -> None:
        """Once a connection has ended: forget it, close its socket."""
        try:
            await link.wait_closed()
        finally:
            if self._link is link:
                self._link = None
            self.dropped_before += link.dropped
            if link._transport is not None:
                link._transport.close()

    async def open(self, host: str, port: int, on_lost: OnLost) -> socket.socket:
        """A datagram socket whose traffic is the flow to (host, port); ``OSError`` (e.g.
        ``ConnectionRefusedError``) when the agent cannot be reached or refuses it."""
        link = await self._connected()
        flow = link.open_flow(StreamHeader(host, port), on_lost)
        try:
            try:
                await asyncio.wait_for(asyncio.shield(flow.answer), SUSPECT_AFTER)
            except TimeoutError:
                self._spawn(link.check())  # a silent agent: drop its connection if it is dead
                await asyncio.wait_for(asyncio.shield(flow.answer), ANSWER_TIMEOUT - SUSPECT_AFTER)
        except BaseException:
            flow.session_end.close()
            raise
        if not flow.open:  # the flow ended between the answer and now
            flow.session_end.close()
            raise ConnectionResetError("the agent ended the flow at once")
        return flow.session_end

    async def close(self) -> None:
        link = self._link
        if link is not None:
            link.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(link.wait_closed(), CLOSE_TIMEOUT)
        for task in list(self._tasks):
            task.cancel()
