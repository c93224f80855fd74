"""Reading a TLS ClientHello as it arrives, to route a connection by its server name (SNI).

``ClientHelloReader.feed`` takes the client's first bytes in whatever pieces TCP delivers
(one byte at a time included) and answers None (need more), a ``ClientHello`` (server name,
ALPN list, versions), or raises ``ClientHelloError`` for a first flight that is not TLS, is
an SSLv2-style hello, is malformed, or does not complete within ``MAX_FLIGHT`` bytes (one
full record and its header, as nginx's ``ssl_preread`` buffer). The ClientHello may span any
number of handshake records. Every byte is copied at most twice (into the record buffer and
the handshake buffer) and the hello is parsed once, when complete: linear in its size.

Pure: no I/O, no clock. The bytes themselves are not kept for the caller, who replays what
it read (passthrough) or hands it to a TLS implementation (termination).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal

from godoxy_streams.errors import StreamsError

RECORD_HEADER = 5
MAX_RECORD = 1 << 14  # TLS plaintext fragments are at most 2^14 bytes
MAX_FLIGHT = MAX_RECORD + RECORD_HEADER  # bytes that must hold the whole ClientHello
CONTENT_HANDSHAKE = 22
CONTENT_ALERT = 21
HANDSHAKE_CLIENT_HELLO = 1
EXT_SERVER_NAME = 0
EXT_ALPN = 16
EXT_SUPPORTED_VERSIONS = 43
MAX_HOST_NAME = 255
ALERT_UNRECOGNIZED_NAME = 112
ALERT_INTERNAL_ERROR = 80

ErrorKind = Literal["not_tls", "sslv2", "malformed", "too_large", "truncated"]


class ClientHelloError(StreamsError):
    """The client's first bytes are not a usable TLS ClientHello; ``kind`` says why."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind


@dataclass(frozen=True, slots=True)
class ClientHello:
    """What routing needs from a ClientHello."""

    legacy_version: int  # client_version / legacy_version (0x0303 for TLS 1.2 and 1.3)
    server_name: str | None  # the host_name of server_name, as sent (not normalised)
    alpn: tuple[str, ...]  # the ALPN protocol names (bytes as latin-1), in the client's order
    versions: tuple[int, ...]  # supported_versions (TLS 1.3 clients), empty when absent
    length: int  # wire bytes up to the end of the record that completed the hello

    @property
    def alert_version(self) -> int:
        """The record version for an alert sent before any ServerHello: the client's
        version, capped at TLS 1.2's 0x0303 (TLS 1.3 records say 0x0303 too)."""
        return min(max(self.legacy_version, 0x0301), 0x0303)


def alert(version: int, description: int, *, fatal: bool = True) -> bytes:
    """One plaintext alert record (e.g. ``ALERT_UNRECOGNIZED_NAME``)."""
    return bytes(
        (CONTENT_ALERT, version >> 8, version & 0xFF, 0, 2, 2 if fatal else 1, description)
    )


class ClientHelloReader:
    """Incremental reader of one connection's ClientHello; see the module docstring."""

    __slots__ = ("_wire", "_pos", "_handshake", "_result", "_error")

    def __init__(self) -> None:
        self._wire = bytearray()  # the bytes fed, up to MAX_FLIGHT
        self._pos = 0  # start of the first record not yet moved into _handshake
        self._handshake = bytearray()  # the handshake layer: record payloads joined
        self._result: ClientHello | None = None
        self._error: ClientHelloError | None = None

    @property
    def seen(self) -> int:
        """Bytes fed so far (counted up to ``MAX_FLIGHT``)."""
        return len(self._wire)

    def feed(self, data: bytes) -> ClientHello | None:
        """The ClientHello once the bytes fed so far hold it, else None (feed more)."""
        if self._result is not None:
            return self._result
        if self._error is not None:
            raise self._error
        try:
            self._result = self._feed(data)
        except ClientHelloError as exc:
            self._error = exc
            raise
        return self._result

    def end(self) -> None:
        """The client sent EOF: raise the reason there is no ClientHello."""
        if self._result is not None:
            return
        if self._error is not None:
            raise self._error
        self._error = ClientHelloError("truncated", "the connection ended inside the ClientHello")
        raise self._error

    def _feed(self, data: bytes) -> ClientHello | None:
        wire = self._wire
        room = MAX_FLIGHT - len(wire)
        wire += data[:room]
        _check_start(wire)
        hello = self._records()
        if hello is None and len(wire) >= MAX_FLIGHT:
            raise ClientHelloError("too_large", f"no complete ClientHello in {MAX_FLIGHT} bytes")
        return hello

    def _records(self) -> ClientHello | None:
        """Move each complete record's payload into the handshake buffer; parse the hello
        once it is all there."""
        wire, handshake = self._wire, self._handshake
        while len(wire) - self._pos >= RECORD_HEADER:
            pos = self._pos
            kind, major, length = wire[pos], wire[pos + 1], int.from_bytes(wire[pos + 3 : pos + 5])
            if kind != CONTENT_HANDSHAKE:
                raise ClientHelloError("malformed", f"record type {kind} before the ClientHello")
            if major != 3:
                raise ClientHelloError("malformed", f"record version {major}.x is not TLS")
            if not 0 < length <= MAX_RECORD:
                raise ClientHelloError("malformed", f"handshake record of {length} bytes")
            end = pos + RECORD_HEADER + length
            if end > MAX_FLIGHT:
                raise ClientHelloError(
                    "too_large", f"no complete ClientHello in {MAX_FLIGHT} bytes"
                )
            if end > len(wire):  # judge the message header as soon as it is there
                head = handshake[:4]
                head += wire[pos + RECORD_HEADER : pos + RECORD_HEADER + 4 - len(head)]
                _check_message(head)
                return None
            handshake += wire[pos + RECORD_HEADER : end]
            self._pos = end
            size = _check_message(handshake)
            if size is not None and len(handshake) >= size:
                return _parse_hello(bytes(handshake[4:size]), end)
        return None


def _check_message(head: bytearray) -> int | None:
    """The size of the handshake message that starts with ``head`` (None before 4 bytes);
    raises unless it is a ClientHello within the bound."""
    if len(head) < 4:
        return None
    if head[0] != HANDSHAKE_CLIENT_HELLO:
        raise ClientHelloError(
            "malformed", f"handshake message type {head[0]} is not a ClientHello"
        )
    size = 4 + int.from_bytes(head[1:4])
    if size + RECORD_HEADER > MAX_FLIGHT:
        raise ClientHelloError("too_large", f"a ClientHello of {size} bytes")
    return size


def _check_start(wire: bytearray) -> None:
    """Reject a first flight that cannot be TLS as soon as its first bytes show it."""
    first = wire[0] if wire else CONTENT_HANDSHAKE
    if first == CONTENT_HANDSHAKE:
        if len(wire) >= 2 and wire[1] != 3:
            raise ClientHelloError("not_tls", "the first bytes are not a TLS record")
        return
    if first & 0x80 and len(wire) >= 3 and wire[2] == HANDSHAKE_CLIENT_HELLO:
        raise ClientHelloError("sslv2", "an SSLv2-style ClientHello (no server name possible)")
    if not (first & 0x80 and len(wire) < 3):
        raise ClientHelloError("not_tls", "the first bytes are not a TLS record")


def _parse_hello(body: bytes, length: int) -> ClientHello:
    """Parse a complete ClientHello body (RFC 8446 4.1.2, RFC 5246 7.4.1.2): one walk of
    plain index arithmetic; only the extensions routing needs are looked into."""
    end = len(body)
    if end < 35:
        raise ClientHelloError("malformed", "the ClientHello ends inside its random")
    version = body[0] << 8 | body[1]
    if version >> 8 != 3:
        raise ClientHelloError("malformed", f"ClientHello version {version:#06x} is not TLS")
    if body[34] > 32:
        raise ClientHelloError("malformed", "a session id longer than 32 bytes")
    pos = 35 + body[34]
    if pos + 2 > end:
        raise ClientHelloError("malformed", "the ClientHello ends inside the cipher suites")
    suites = body[pos] << 8 | body[pos + 1]
    if suites < 2 or suites % 2:
        raise ClientHelloError("malformed", f"a cipher suite list of {suites} bytes")
    pos += 2 + suites
    if pos >= end or body[pos] < 1:
        raise ClientHelloError("malformed", "no compression method")
    pos += 1 + body[pos]
    found: dict[int, tuple[int, int]] = {}
    if pos < end:  # a hello without extensions is valid up to TLS 1.2
        if pos + 2 > end or pos + 2 + (body[pos] << 8 | body[pos + 1]) != end:
            raise ClientHelloError("malformed", "the extensions do not fill the ClientHello")
        pos += 2
        seen: set[int] = set()
        while pos < end:
            if pos + 4 > end:
                raise ClientHelloError("malformed", "the ClientHello ends inside an extension")
            kind, size = _TYPE_LENGTH.unpack_from(body, pos)
            pos += 4
            if pos + size > end:
                raise ClientHelloError("malformed", f"extension {kind} overruns the ClientHello")
            if kind in seen:
                raise ClientHelloError("malformed", f"extension {kind} appears twice")
            seen.add(kind)
            if kind in _WANTED:
                found[kind] = (pos, pos + size)
            pos += size
    elif pos > end:
        raise ClientHelloError("malformed", "the ClientHello ends inside its compression methods")
    sni, alpn, versions = (found.get(k) for k in _WANTED)
    return ClientHello(
        legacy_version=version,
        server_name=_server_name(body, *sni) if sni is not None else None,
        alpn=_alpn(body, *alpn) if alpn is not None else (),
        versions=_versions(body, *versions) if versions is not None else (),
        length=length,
    )


_TYPE_LENGTH = struct.Struct(">HH")
_WANTED = (EXT_SERVER_NAME, EXT_ALPN, EXT_SUPPORTED_VERSIONS)


def _list(body: bytes, pos: int, end: int, size: int, what: str) -> int:
    """The start of the one non-empty list (``size``-byte length) that fills an extension."""
    if pos + size > end:
        raise ClientHelloError("malformed", f"the ClientHello ends inside {what}")
    length = int.from_bytes(body[pos : pos + size])
    if length == 0 or pos + size + length != end:
        raise ClientHelloError("malformed", f"{what} of {length} bytes in {end - pos - size}")
    return pos + size


def _server_name(body: bytes, pos: int, end: int) -> str | None:
    """The host_name of a server_name extension (RFC 6066 3): at most one, not empty."""
    pos = _list(body, pos, end, 2, "a server name list")
    host: bytes | None = None
    while pos < end:
        if pos + 3 > end:
            raise ClientHelloError("malformed", "the ClientHello ends inside a server name")
        name_type, size = body[pos], body[pos + 1] << 8 | body[pos + 2]
        pos += 3 + size
        if pos > end:
            raise ClientHelloError("malformed", "the ClientHello ends inside a server name")
        if name_type != 0:
            continue
        if host is not None:
            raise ClientHelloError("malformed", "two host names in server_name")
        host = body[pos - size : pos]
        if not 0 < size <= MAX_HOST_NAME or b"\0" in host:
            raise ClientHelloError("malformed", f"a host name of {size} bytes")
    if host is None:
        return None
    try:
        return host.decode("utf-8")  # ASCII (A-labels) from any sane client
    except UnicodeDecodeError:
        raise ClientHelloError("malformed", "a host name that is not UTF-8") from None


def _alpn(body: bytes, pos: int, end: int) -> tuple[str, ...]:
    pos = _list(body, pos, end, 2, "an ALPN list")
    names = []
    while pos < end:
        size = body[pos]
        pos += 1 + size
        if size == 0 or pos > end:
            raise ClientHelloError("malformed", "an empty or cut ALPN name")
        names.append(body[pos - size : pos].decode("latin-1"))
    return tuple(names)


def _versions(body: bytes, pos: int, end: int) -> tuple[int, ...]:
    pos = _list(body, pos, end, 1, "a supported_versions list")
    if (end - pos) % 2:
        raise ClientHelloError("malformed", "a supported_versions list of odd length")
    return struct.unpack_from(f">{(end - pos) // 2}H", body, pos)
