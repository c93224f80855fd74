"""The stream header: the fixed-size record that opens every tunnelled TCP connection.

Layout (big-endian, ``HEADER_SIZE`` = 78 bytes):

    0   4  magic  b"GDST"
    4   1  version (1)
    5   1  flags: bit 0 = probe (validate, then close), other bits 0
    6   1  host length (1-64)
    7   1  reserved, 0
    8   2  destination port (1-65535)
    10  64 destination host (an IP literal or a name, ASCII), zero-padded
    74  4  CRC-32 (zlib) of bytes 0-73

After the header the agent dials the destination and answers ``PROBE_OK`` once connected
(then relays, or closes after a probe header); a refused header or destination, or a failed
dial, is closed with no answer.

Pure: bytes in, a ``StreamHeader`` out, or ``HeaderError`` naming what is wrong.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

MAGIC = b"GDST"
VERSION = 1
FLAG_PROBE = 0x01
HOST_MAX = 64
_LAYOUT = struct.Struct(f">4sBBBBH{HOST_MAX}s")
HEADER_SIZE = _LAYOUT.size + 4
ALPN_STREAM = "godoxy-streams-stream/1"
PROBE_OK = b"OK"  # the agent's answer to a probe whose destination it reached
ALPN_HTTP = "http/1.1"


class HeaderError(ValueError):
    """A stream header that must be refused."""


@dataclass(frozen=True)
class StreamHeader:
    host: str
    port: int
    probe: bool = False

    def encode(self) -> bytes:
        """The header's bytes; refuses what ``decode`` would refuse (``HeaderError``)."""
        if not self.host.isascii() or not self.host.isprintable() or " " in self.host:
            raise HeaderError("host must be printable ASCII without spaces")
        host = self.host.encode("ascii")
        if not 1 <= len(host) <= HOST_MAX:
            raise HeaderError(f"host must be 1-{HOST_MAX} ASCII bytes")
        if not 1 <= self.port <= 65535:
            raise HeaderError("port must be 1-65535")
        flags = FLAG_PROBE if self.probe else 0
        body = _LAYOUT.pack(MAGIC, VERSION, flags, len(host), 0, self.port, host)
        return body + struct.pack(">I", zlib.crc32(body))


def decode(data: bytes) -> StreamHeader:
    """The header in ``data`` (exactly ``HEADER_SIZE`` bytes)."""
    if len(data) != HEADER_SIZE:
        raise HeaderError(f"a header is {HEADER_SIZE} bytes, not {len(data)}")
    body, (crc,) = data[:-4], struct.unpack(">I", data[-4:])
    if zlib.crc32(body) != crc:
        raise HeaderError("checksum mismatch")
    magic, version, flags, length, reserved, port, host = _LAYOUT.unpack(body)
    if magic != MAGIC:
        raise HeaderError("bad magic")
    if version != VERSION:
        raise HeaderError(f"unsupported version {version}")
    if flags & ~FLAG_PROBE or reserved:
        raise HeaderError("unknown flags or reserved bits set")
    if not 1 <= length <= HOST_MAX or any(host[length:]):
        raise HeaderError("bad host length or padding")
    if not 1 <= port <= 65535:
        raise HeaderError("bad port")
    try:
        text = host[:length].decode("ascii")
    except UnicodeDecodeError:
        raise HeaderError("host is not ASCII") from None
    if not text.isprintable() or " " in text:
        raise HeaderError("host has unprintable characters")
    return StreamHeader(text, port, bool(flags & FLAG_PROBE))
