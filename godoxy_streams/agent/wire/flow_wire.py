"""The wire format of the agent's datagram channel (docs/agent-protocol.md, section 5). Pure:
bytes in, bytes out.

One QUIC stream per connection, opened by the daemon, carries control messages both ways: a
type byte and a 4-byte flow number, then, for OPEN, the 78-byte stream header and, for DATA,
a 2-byte length and a datagram too large for a DATAGRAM frame. Every other datagram of a
flow is one DATAGRAM frame: the flow number as a QUIC variable-length integer, then the
payload. One stream, however many flows: aioquic visits every open stream for every packet
it sends, so a stream per flow would make each packet cost as much as the number of sessions.
"""

from __future__ import annotations

import struct

from godoxy_streams.agent.wire.header import HEADER_SIZE

OPEN, ANSWER, END, DATA = 1, 2, 3, 4  # control message types
CONTROL = struct.Struct(">BI")  # type, flow number
LENGTH = struct.Struct(">H")  # of a DATA message's payload
SIZES = {OPEN: CONTROL.size + HEADER_SIZE, ANSWER: CONTROL.size, END: CONTROL.size}
DATAGRAM_ROOM = 1150  # flow number + payload of one DATAGRAM frame in a 1200-byte packet


class ProtocolError(ValueError):
    """A control message that breaks the wire format: the connection is closed."""


def message(kind: int, flow: int, body: bytes = b"") -> bytes:
    """A control message (OPEN with the stream header as ``body``; DATA with a datagram)."""
    if kind == DATA:
        return CONTROL.pack(DATA, flow) + LENGTH.pack(len(body)) + body
    return CONTROL.pack(kind, flow) + body


class ControlReader:
    """Reassembles control messages from the control stream, whatever its reads' split
    (in time linear in the bytes read)."""

    __slots__ = ("buffer",)

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        """The complete messages so far, as (type, flow, body); ``ProtocolError`` when a
        type is unknown."""
        buffer = self.buffer
        buffer += data
        out = []
        at = 0
        while len(buffer) - at >= CONTROL.size:
            kind, flow = CONTROL.unpack_from(buffer, at)
            if kind == DATA:
                if len(buffer) - at < CONTROL.size + LENGTH.size:
                    break
                size = CONTROL.size + LENGTH.size + LENGTH.unpack_from(buffer, at + CONTROL.size)[0]
                body_at = CONTROL.size + LENGTH.size
            elif kind in SIZES:
                size, body_at = SIZES[kind], CONTROL.size
            else:
                raise ProtocolError(f"unknown control message type {kind}")
            if len(buffer) - at < size:
                break
            out.append((kind, flow, bytes(buffer[at + body_at : at + size])))
            at += size
        del buffer[:at]
        return out


def flow_prefix(flow: int) -> bytes:
    """The flow number that starts each of the flow's DATAGRAM frames."""
    if flow < 0x40:
        return bytes((flow,))
    if flow < 0x4000:
        return struct.pack(">H", 0x4000 | flow)
    if flow < 0x40000000:
        return struct.pack(">I", 0x80000000 | flow)
    return struct.pack(">Q", 0xC000000000000000 | flow)


def split_datagram(frame: bytes) -> tuple[int, bytes]:
    """(flow number, payload) of a DATAGRAM frame; ``ValueError`` when it is too short."""
    if not frame:
        raise ValueError("empty frame")
    first = frame[0]
    if first < 0x40:  # the first 64 flows of a connection: one byte
        return first, frame[1:]
    size = 1 << (first >> 6)
    if len(frame) < size:
        raise ValueError("truncated flow number")
    return int.from_bytes(frame[:size], "big") & ((1 << (8 * size - 2)) - 1), frame[size:]
