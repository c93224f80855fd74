"""The QUIC connections of the agent's datagram channel, both ends (``FlowLink``), and a flow's
socket on either end (``SocketFlow``): what the socket reads goes to the peer as the flow's
datagrams, what the peer sends for the flow is written to it. Datagrams go out as DATAGRAM
frames, or as DATA messages on the control stream when too large (``flow_wire``); whatever
was sent in one loop turn leaves in one transmit.
"""

from __future__ import annotations

import socket

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.connection import NetworkAddress, QuicConnection
from aioquic.quic.events import (
    ConnectionTerminated,
    DatagramFrameReceived,
    QuicEvent,
    StreamDataReceived,
    StreamReset,
)
from aioquic.quic.packet import QuicErrorCode, QuicFrameType

from godoxy_streams.agent.wire.flow_wire import (
    DATA,
    DATAGRAM_ROOM,
    ControlReader,
    ProtocolError,
    flow_prefix,
    message,
    split_datagram,
)

QUEUE_MAX = 1024  # datagrams waiting for the congestion window; more are dropped
CONTROL_BUFFER_MAX = 4 << 20  # unacknowledged control bytes beyond which DATA is dropped
BATCH = 256  # datagrams read from a flow's socket per readiness callback, at most
MAX_DATAGRAM = 65535


class FlowLink(QuicConnectionProtocol):
    """A QUIC connection that carries flows (both ends): control messages on its one stream,
    datagrams as frames, one transmit per loop turn however many were sent in it."""

    CONTROL_STREAM = 0  # the first stream the daemon opens

    def __init__(self, quic: QuicConnection, **kwargs: object) -> None:
        super().__init__(quic)
        self.dropped = 0  # datagrams dropped: congestion window or a socket full
        self.control = ControlReader()
        self.violated = False  # closing for a protocol violation: read nothing more
        self._flush_pending = False

    def send_message(self, kind: int, flow: int, body: bytes = b"") -> None:
        self._quic.send_stream_data(self.CONTROL_STREAM, message(kind, flow, body))
        self.flush_soon()

    def send_datagram(self, flow: int, prefix: bytes, payload: bytes) -> None:
        quic = self._quic
        if len(prefix) + len(payload) <= DATAGRAM_ROOM:
            if len(quic._datagrams_pending) >= QUEUE_MAX:
                self.dropped += 1
                return
            quic.send_datagram_frame(prefix + payload)
            self.flush_soon()
            return
        stream = quic._streams.get(self.CONTROL_STREAM)
        if stream is not None:
            sender = stream.sender
            if sender._buffer_stop - sender._buffer_start > CONTROL_BUFFER_MAX:
                self.dropped += 1
                return
        self.send_message(DATA, flow, payload)

    def datagram_received(self, data: bytes | str, addr: NetworkAddress) -> None:
        """As aioquic's, but the answer waits for the end of the loop turn, so the packets
        that arrived together are answered (and acknowledged) together."""
        self._quic.receive_datagram(data, addr, now=self._loop.time())  # type: ignore[arg-type]
        self._process_events()
        self.flush_soon()

    def flush_soon(self) -> None:
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        self.transmit()

    def quic_event_received(self, event: QuicEvent) -> None:
        if self.violated and not isinstance(event, ConnectionTerminated):
            return
        if isinstance(event, DatagramFrameReceived):
            try:
                flow, payload = split_datagram(event.data)
            except ValueError:
                return
            self.on_datagram(flow, payload)
        elif isinstance(event, StreamDataReceived):
            if event.stream_id != self.CONTROL_STREAM:
                return self.protocol_error(f"data on stream {event.stream_id}")
            try:
                messages = self.control.feed(event.data)
            except ProtocolError as exc:
                return self.protocol_error(str(exc))
            for kind, flow, body in messages:
                if self.violated:
                    return
                if kind == DATA:
                    self.on_datagram(flow, body)
                else:
                    self.on_message(kind, flow, body)
            if event.end_stream:
                self.protocol_error("the control stream ended")
        elif isinstance(event, StreamReset):
            self.protocol_error("the control stream was reset")
        elif isinstance(event, ConnectionTerminated):
            self.on_terminated(event.reason_phrase or str(event.error_code))

    def protocol_error(self, why: str) -> None:
        self.violated = True
        self.close_with(QuicErrorCode.PROTOCOL_VIOLATION, why)

    def close_with(self, code: QuicErrorCode, why: str) -> None:
        """Close with a transport error (``close`` sends an application error)."""
        self._quic.close(error_code=code, frame_type=QuicFrameType.PADDING, reason_phrase=why)
        self.transmit()

    def on_datagram(self, flow: int, payload: bytes) -> None:
        raise NotImplementedError

    def on_message(self, kind: int, flow: int, body: bytes) -> None:
        """OPEN, ANSWER or END (DATA goes to ``on_datagram``)."""
        raise NotImplementedError

    def on_terminated(self, why: str) -> None:
        raise NotImplementedError


class SocketFlow:
    """One flow's socket on this end: a connected, non-blocking datagram socket."""

    __slots__ = ("link", "number", "prefix", "sock", "limit", "reading")

    def __init__(self, link: FlowLink, number: int, sock: socket.socket) -> None:
        self.link = link
        self.number = number
        self.prefix = flow_prefix(number)
        self.sock = sock
        self.limit = 1
        self.reading = False

    def start(self) -> None:
        """Relay what the socket reads from now on."""
        self.link._loop.add_reader(self.sock.fileno(), self.readable)
        self.reading = True

    def readable(self) -> None:
        """Send what the socket holds to the peer. Adaptive batch, as the session relay's: one
        datagram after a quiet callback (no EAGAIN round trip), up to ``BATCH`` in a burst."""
        recv = self.sock.recv
        send = self.link.send_datagram
        number, prefix = self.number, self.prefix
        count = 0
        limit = self.limit
        while count < limit:
            try:
                data = recv(MAX_DATAGRAM)
            except BlockingIOError:
                break
            except OSError:  # an ICMP error of an earlier send (e.g. port unreachable)
                count += 1
                continue
            count += 1
            send(number, prefix, data)
        self.limit = BATCH if count > 1 or count >= limit else 1

    def deliver(self, payload: bytes) -> None:
        """Write one of the peer's datagrams (dropped, and counted, when the socket is full)."""
        try:
            self.sock.send(payload)
        except OSError:
            self.link.dropped += 1

    def close(self) -> None:
        if self.reading:
            self.reading = False
            self.link._loop.remove_reader(self.sock.fileno())
        self.sock.close()
