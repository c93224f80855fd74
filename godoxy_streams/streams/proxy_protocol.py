"""PROXY protocol v1 and v2 (HAProxy's proxy-protocol.txt): encode headers, decode them
incrementally from bytes as they arrive on a socket. Pure functions and state, no I/O.

Decoding is strict where the spec says "must": v1 lines end in CRLF within 107 bytes, use
exactly one space between fields and no heading zeroes in ports or IPv4 octets; v2 headers
carry version 2, command LOCAL or PROXY, one of the seven valid family/transport bytes, a
length at least as long as the address block, and well-formed TLVs (a CRC32C TLV is
verified). Anything else raises ``ProxyProtocolError``.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from godoxy_streams.errors import ProxyProtocolError

Address = tuple[str, int]
Family = Literal["INET", "INET6", "UNIX", "UNSPEC"]
Transport = Literal["STREAM", "DGRAM", "UNSPEC"]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

V1_PREFIX = b"PROXY "
V1_MAX_LENGTH = 107  # the longest v1 line, CRLF included ("PROXY UNKNOWN" + 2 IPv6 + ports)
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_HEADER_LENGTH = 16
MAX_TLV_BYTES = 4096
TLV_CRC32C = 0x03
TLV_NOOP = 0x04

# (family, transport) byte of v2 -> names and the length of the address block.
_V2_FAMILIES: dict[int, tuple[Family, Transport, int]] = {
    0x00: ("UNSPEC", "UNSPEC", 0),
    0x11: ("INET", "STREAM", 12),
    0x12: ("INET", "DGRAM", 12),
    0x21: ("INET6", "STREAM", 36),
    0x22: ("INET6", "DGRAM", 36),
    0x31: ("UNIX", "STREAM", 216),
    0x32: ("UNIX", "DGRAM", 216),
}
_LONGEST_ADDRESS_BLOCK = 216


@dataclass(frozen=True)
class ParseOutcome:
    """A decoded header. ``source``/``destination`` are None for LOCAL and UNKNOWN/UNSPEC;
    a UNIX address is ``(path, 0)``. ``rest`` holds the payload bytes that followed it."""

    version: Literal[1, 2]
    command: Literal["PROXY", "LOCAL"]
    family: Family
    transport: Transport
    source: Address | None
    destination: Address | None
    header_length: int
    tlvs: dict[int, bytes] = field(default_factory=dict)
    rest: bytes = b""


# --- encoding ---------------------------------------------------------------------------


def _ip(host: str) -> IPAddress:
    """The address of ``host``, with any ``%scope`` dropped and IPv4-mapped IPv6 unmapped."""
    address = ipaddress.ip_address(host.partition("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _pair(src: Address, dst: Address) -> tuple[IPAddress, IPAddress]:
    """Both endpoints in one family: if they differ, the IPv4 one is mapped into IPv6."""
    for _, port in (src, dst):
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} is out of range 0..65535")
    a, b = _ip(src[0]), _ip(dst[0])
    if a.version != b.version:
        a, b = (ipaddress.IPv6Address(f"::ffff:{x}") if x.version == 4 else x for x in (a, b))
    return a, b


def _v1_text(address: IPAddress) -> str:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        low = int(address) & 0xFFFFFFFF  # hex groups, as the spec asks (3.13+ prints dotted)
        return f"::ffff:{low >> 16:x}:{low & 0xFFFF:x}"
    return address.compressed


def encode_v1(src: Address, dst: Address) -> bytes:
    """A v1 (text) header for a TCP connection from ``src`` to ``dst``."""
    a, b = _pair(src, dst)
    proto = "TCP4" if a.version == 4 else "TCP6"
    return f"PROXY {proto} {_v1_text(a)} {_v1_text(b)} {src[1]} {dst[1]}\r\n".encode("ascii")


def encode_v1_unknown() -> bytes:
    """The short v1 UNKNOWN header (receivers keep the real endpoints)."""
    return b"PROXY UNKNOWN\r\n"


def encode_v2(
    src: Address,
    dst: Address,
    *,
    proto: Literal["tcp", "udp"] = "tcp",
    tlvs: Mapping[int, bytes] | None = None,
) -> bytes:
    """A v2 (binary) PROXY header for a ``proto`` flow from ``src`` to ``dst``."""
    a, b = _pair(src, dst)
    fam = (0x10 if a.version == 4 else 0x20) | (0x01 if proto == "tcp" else 0x02)
    body = a.packed + b.packed + struct.pack("!HH", src[1], dst[1])
    for kind, value in (tlvs or {}).items():
        if not 0 <= kind <= 255 or len(value) > 65535:
            raise ValueError(f"TLV {kind} is out of range")
        body += struct.pack("!BH", kind, len(value)) + value
    if len(body) > 65535:
        raise ValueError("the header's TLVs are too long")
    return V2_SIGNATURE + struct.pack("!BBH", 0x21, fam, len(body)) + body


def encode_v2_local() -> bytes:
    """A v2 LOCAL header (health probes: receivers keep the real endpoints)."""
    return V2_SIGNATURE + b"\x20\x00\x00\x00"


def encode_header(
    version: Literal["v1", "v2"], src: Address, dst: Address, proto: Literal["tcp", "udp"]
) -> bytes:
    """The header a route's ``proxy_protocol`` setting asks for (v1 is TCP only)."""
    if version == "v1":
        if proto != "tcp":
            raise ValueError("PROXY protocol v1 can describe TCP connections only")
        return encode_v1(src, dst)
    return encode_v2(src, dst, proto=proto)


# --- decoding ---------------------------------------------------------------------------


def detect(first_bytes: bytes) -> bool | None:
    """Whether a stream starting with ``first_bytes`` carries a PROXY header: True, False,
    or None while the bytes so far are a prefix of both a header and something else."""
    for signature in (V1_PREFIX, V2_SIGNATURE):
        if first_bytes.startswith(signature):
            return True
        if signature.startswith(first_bytes):
            return None
    return False


class ProxyHeaderParser:
    """Incremental decoder of one header at the start of a stream.

    ``feed`` returns None while more bytes are needed, the ``ParseOutcome`` once the header
    is complete, and raises ``ProxyProtocolError`` as soon as the input cannot be a header.
    A v1 header is at most 107 bytes; a v2 header may carry at most ``max_tlv_bytes`` past
    its address block. After an error, every further ``feed`` raises the same error.
    """

    def __init__(self, *, max_tlv_bytes: int = MAX_TLV_BYTES) -> None:
        self._buffer = bytearray()
        self._max_tlv = max_tlv_bytes
        self._error: ProxyProtocolError | None = None
        self._done = False

    def feed(self, data: bytes) -> ParseOutcome | None:
        if self._done:
            raise RuntimeError("the PROXY header was already decoded")
        if self._error is not None:
            raise self._error
        self._buffer += data
        try:
            outcome = self._parse()
        except ProxyProtocolError as exc:
            self._error = exc
            self._buffer.clear()
            raise
        if outcome is not None:
            self._done = True
            self._buffer.clear()
        return outcome

    def feed_eof(self) -> None:
        """The stream ended: raise ``ProxyProtocolError`` unless a header was decoded."""
        if self._error is not None:
            raise self._error
        if not self._done:
            self._error = ProxyProtocolError("the stream ended inside the PROXY header")
            raise self._error

    def _parse(self) -> ParseOutcome | None:
        buf = self._buffer
        if not buf:
            return None
        for signature, parse in ((V1_PREFIX, self._parse_v1), (V2_SIGNATURE, self._parse_v2)):
            if buf[: len(signature)] == signature[: len(buf)]:
                return parse() if len(buf) >= len(signature) else None
        raise ProxyProtocolError("the stream does not start with a PROXY protocol header")

    def _parse_v1(self) -> ParseOutcome | None:
        buf = self._buffer
        end = buf.find(b"\n", 0, V1_MAX_LENGTH)
        if end < 0:
            if len(buf) >= V1_MAX_LENGTH:
                raise ProxyProtocolError("PROXY v1 header without CRLF in its first 107 bytes")
            return None
        if buf[end - 1] != 0x0D:
            raise ProxyProtocolError("PROXY v1 header ends in a bare LF, not CRLF")
        line = bytes(buf[len(V1_PREFIX) : end - 1])
        rest = bytes(buf[end + 1 :])
        if line == b"UNKNOWN" or line.startswith(b"UNKNOWN "):  # the rest must be ignored
            return ParseOutcome(1, "PROXY", "UNSPEC", "UNSPEC", None, None, end + 1, rest=rest)
        if any(c < 0x20 or c > 0x7E for c in line):
            raise ProxyProtocolError("PROXY v1 header holds a non-printable character")
        fields = line.decode("ascii").split(" ")
        if fields[0] not in ("TCP4", "TCP6"):
            raise ProxyProtocolError(f"PROXY v1 protocol {fields[0][:8]!r} is not TCP4/TCP6")
        if len(fields) != 5:
            raise ProxyProtocolError("PROXY v1 header needs exactly 4 fields after the protocol")
        version = 4 if fields[0] == "TCP4" else 6
        src, dst = (_v1_address(text, version) for text in fields[1:3])
        sport, dport = (_v1_port(text) for text in fields[3:5])
        family: Family = "INET" if version == 4 else "INET6"
        return ParseOutcome(
            1, "PROXY", family, "STREAM", (src, sport), (dst, dport), end + 1, rest=rest
        )

    def _parse_v2(self) -> ParseOutcome | None:
        buf = self._buffer
        if len(buf) < V2_HEADER_LENGTH:
            return None
        version, command = buf[12] >> 4, buf[12] & 0x0F
        if version != 2:
            raise ProxyProtocolError(f"PROXY v2 signature with version {version}")
        if command > 1:
            raise ProxyProtocolError(f"PROXY v2 command {command} is neither LOCAL nor PROXY")
        (length,) = struct.unpack_from("!H", buf, 14)
        known = _V2_FAMILIES.get(buf[13])
        if command == 1 and known is None:
            raise ProxyProtocolError(f"PROXY v2 family/transport byte {buf[13]:#04x} is invalid")
        address_length = known[2] if known and command == 1 else _LONGEST_ADDRESS_BLOCK
        if command == 1 and length < address_length:
            raise ProxyProtocolError(f"PROXY v2 length {length} is shorter than its addresses")
        if length > address_length + self._max_tlv:
            raise ProxyProtocolError(f"PROXY v2 header of {length} bytes is too long")
        total = V2_HEADER_LENGTH + length
        if len(buf) < total:
            return None
        header, rest = bytes(buf[:total]), bytes(buf[total:])
        if command == 0 or known is None:  # LOCAL: the block, family included, is discarded
            return ParseOutcome(2, "LOCAL", "UNSPEC", "UNSPEC", None, None, total, rest=rest)
        family, transport, address_length = known
        src, dst = _v2_addresses(
            family, header[V2_HEADER_LENGTH : V2_HEADER_LENGTH + address_length]
        )
        tlvs = _v2_tlvs(header, V2_HEADER_LENGTH + address_length)
        return ParseOutcome(2, "PROXY", family, transport, src, dst, total, tlvs, rest)


def _v1_address(text: str, version: int) -> str:
    allowed = "0123456789." if version == 4 else "0123456789abcdefABCDEF:."
    try:  # the character check keeps out what ipaddress would also accept (%scope, ...)
        if text and all(c in allowed for c in text):
            address = ipaddress.ip_address(text)
            if address.version == version:
                return str(address)
    except ValueError:
        pass
    raise ProxyProtocolError(f"PROXY v1 address {text[:45]!r} is not an IPv{version} address")


def _v1_port(text: str) -> int:
    if not text.isdigit() or not text.isascii() or len(text) > 5 or text != str(int(text)):
        raise ProxyProtocolError(f"PROXY v1 port {text[:8]!r} is not a decimal without zeroes")
    port = int(text)
    if port > 65535:
        raise ProxyProtocolError(f"PROXY v1 port {port} is out of range")
    return port


def _v2_addresses(family: Family, block: bytes) -> tuple[Address | None, Address | None]:
    if family == "INET":
        src, dst, sport, dport = struct.unpack("!4s4sHH", block)
        return (str(ipaddress.IPv4Address(src)), sport), (str(ipaddress.IPv4Address(dst)), dport)
    if family == "INET6":
        src, dst, sport, dport = struct.unpack("!16s16sHH", block)
        return (str(ipaddress.IPv6Address(src)), sport), (str(ipaddress.IPv6Address(dst)), dport)
    if family == "UNIX":
        paths = (block[i : i + 108].split(b"\x00", 1)[0] for i in (0, 108))
        src_path, dst_path = (p.decode("utf-8", "backslashreplace") for p in paths)
        return (src_path, 0), (dst_path, 0)
    return None, None


def _v2_tlvs(header: bytes, start: int) -> dict[int, bytes]:
    """The TLVs from ``start`` to the end of ``header`` (NOOP dropped, first of a type kept);
    a CRC32C TLV must hold the checksum of the header with its own value zeroed."""
    tlvs: dict[int, bytes] = {}
    crc_at: int | None = None
    at = start
    while at < len(header):
        if at + 3 > len(header):
            raise ProxyProtocolError("PROXY v2 TLV is truncated")
        kind, length = header[at], int.from_bytes(header[at + 1 : at + 3], "big")
        if at + 3 + length > len(header):
            raise ProxyProtocolError(f"PROXY v2 TLV {kind:#04x} runs past the header")
        if kind == TLV_CRC32C:
            if length != 4 or crc_at is not None:
                raise ProxyProtocolError("PROXY v2 CRC32C TLV must appear once with 4 bytes")
            crc_at = at + 3
        if kind != TLV_NOOP:
            tlvs.setdefault(kind, header[at + 3 : at + 3 + length])
        at += 3 + length
    if crc_at is not None:
        zeroed = header[:crc_at] + b"\x00\x00\x00\x00" + header[crc_at + 4 :]
        if crc32c(zeroed) != int.from_bytes(header[crc_at : crc_at + 4], "big"):
            raise ProxyProtocolError("PROXY v2 CRC32C checksum does not match the header")
    return tlvs


def _crc32c_entry(byte: int) -> int:
    for _ in range(8):
        byte = (byte >> 1) ^ 0x82F63B78 if byte & 1 else byte >> 1
    return byte


_CRC32C_TABLE = tuple(_crc32c_entry(byte) for byte in range(256))


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as the v2 CRC32C TLV uses."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
