"""The agent stream header: layout, round trips, and every way a header must be refused."""

from __future__ import annotations

import string
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from godoxy_streams.agent.wire.header import (
    FLAG_PROBE,
    HEADER_SIZE,
    HOST_MAX,
    MAGIC,
    VERSION,
    HeaderError,
    StreamHeader,
    decode,
)

HOST_ALPHABET = "".join(c for c in string.printable if c.isprintable() and c != " ")

ROUND_TRIPS = [
    StreamHeader("10.0.0.1", 80),
    StreamHeader("2001:db8::1", 443),
    StreamHeader("::ffff:192.0.2.1", 8080),
    StreamHeader("db.internal.example", 5432),
    StreamHeader("h" * HOST_MAX, 65535),
    StreamHeader("a", 1),
    StreamHeader("redis", 6379, probe=True),
    StreamHeader("x" * HOST_MAX, 1, probe=True),
]


def _seal(body: bytes) -> bytes:
    """``body`` (bytes 0-73) with a valid CRC appended."""
    assert len(body) == HEADER_SIZE - 4
    return body + struct.pack(">I", zlib.crc32(body))


def _patched(header: StreamHeader, offset: int, value: bytes) -> bytes:
    """``header`` encoded, bytes at ``offset`` replaced, and the CRC recomputed."""
    body = bytearray(header.encode()[:-4])
    body[offset : offset + len(value)] = value
    return _seal(bytes(body))


def _with_host(raw: bytes, length: int | None = None, port: int = 80) -> bytes:
    """A sealed header carrying ``raw`` as host bytes (no checks of its own)."""
    host = raw.ljust(HOST_MAX, b"\0")
    n = len(raw) if length is None else length
    return _seal(struct.pack(f">4sBBBBH{HOST_MAX}s", MAGIC, VERSION, 0, n, 0, port, host))


# --- layout and round trips ---------------------------------------------------------------


def test_header_size() -> None:
    assert HEADER_SIZE == 78
    assert all(len(h.encode()) == 78 for h in ROUND_TRIPS)


@pytest.mark.parametrize("header", ROUND_TRIPS, ids=lambda h: f"{h.host[:20]}:{h.port}")
def test_round_trip(header: StreamHeader) -> None:
    decoded = decode(header.encode())
    assert decoded == header
    assert decoded.probe is header.probe


def test_known_layout() -> None:
    data = StreamHeader("2001:db8::1", 443, probe=True).encode()
    host = b"2001:db8::1"
    assert data[0:4] == b"GDST"
    assert data[4] == 1  # version
    assert data[5] == FLAG_PROBE
    assert data[6] == len(host)
    assert data[7] == 0  # reserved
    assert data[8:10] == b"\x01\xbb"  # 443, big-endian
    assert data[10 : 10 + len(host)] == host
    assert data[10 + len(host) : 74] == bytes(HOST_MAX - len(host))
    assert data[74:] == zlib.crc32(data[:74]).to_bytes(4, "big")


def test_probe_flag_is_the_only_difference() -> None:
    plain = StreamHeader("10.0.0.1", 80).encode()
    probe = StreamHeader("10.0.0.1", 80, probe=True).encode()
    assert plain[5] == 0 and probe[5] == FLAG_PROBE
    assert plain[:5] == probe[:5] and plain[6:74] == probe[6:74]
    assert decode(plain).probe is False and decode(probe).probe is True


# --- corruption ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [StreamHeader("10.0.0.1", 80), StreamHeader("h" * HOST_MAX, 65535, probe=True)],
    ids=["short-host", "full-host-probe"],
)
def test_every_single_bit_flip_is_refused(header: StreamHeader) -> None:
    data = header.encode()
    accepted = []
    for bit in range(HEADER_SIZE * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        try:
            decode(bytes(flipped))
        except HeaderError:
            continue
        accepted.append(bit)
    assert accepted == []


def test_checksum_mismatch_message() -> None:
    data = bytearray(StreamHeader("10.0.0.1", 80).encode())
    data[-1] ^= 0xFF
    with pytest.raises(HeaderError, match="^checksum mismatch$"):
        decode(bytes(data))


@pytest.mark.parametrize("length", [0, 1, 4, 77, 79, 156, 1024])
def test_wrong_length_is_refused(length: int) -> None:
    valid = StreamHeader("10.0.0.1", 80).encode()
    data = (valid * (length // HEADER_SIZE + 1))[:length]
    with pytest.raises(HeaderError, match=f"^a header is 78 bytes, not {length}$"):
        decode(data)


def test_valid_header_with_trailing_data_is_refused() -> None:
    valid = StreamHeader("10.0.0.1", 80).encode()
    with pytest.raises(HeaderError, match="not 79"):
        decode(valid + b"\0")


# --- bad fields under a valid checksum -----------------------------------------------------

BASE = StreamHeader("db.internal.example", 5432)


@pytest.mark.parametrize(
    ("offset", "value", "message"),
    [
        (0, b"GDSX", "^bad magic$"),
        (0, b"gdst", "^bad magic$"),
        (0, b"\0\0\0\0", "^bad magic$"),
        (4, b"\x00", "^unsupported version 0$"),
        (4, b"\x02", "^unsupported version 2$"),
        (4, b"\xff", "^unsupported version 255$"),
        (5, b"\x02", "^unknown flags or reserved bits set$"),
        (5, b"\x03", "^unknown flags or reserved bits set$"),
        (5, b"\x80", "^unknown flags or reserved bits set$"),
        (7, b"\x01", "^unknown flags or reserved bits set$"),
        (7, b"\x80", "^unknown flags or reserved bits set$"),
        (6, b"\x00", "^bad host length or padding$"),
        (6, bytes([HOST_MAX + 1]), "^bad host length or padding$"),
        (6, b"\xff", "^bad host length or padding$"),
        (6, b"\x05", "^bad host length or padding$"),  # shorter than the host: padding not 0
        (10 + len(BASE.host), b"x", "^bad host length or padding$"),
        (73, b"\x01", "^bad host length or padding$"),
        (8, b"\x00\x00", "^bad port$"),
    ],
    ids=lambda v: v.hex() if isinstance(v, bytes) else None,
)
def test_bad_field_is_refused(offset: int, value: bytes, message: str) -> None:
    with pytest.raises(HeaderError, match=message):
        decode(_patched(BASE, offset, value))


def test_patch_helper_keeps_a_valid_header() -> None:
    """The helper above only changes what it is told to (so the refusals are for that)."""
    assert decode(_patched(BASE, 8, b"\x15\x38")) == BASE
    assert decode(_patched(BASE, 5, bytes([FLAG_PROBE]))) == StreamHeader(
        BASE.host, BASE.port, probe=True
    )


@pytest.mark.parametrize("raw", [b"caf\xc3\xa9", b"\x80", b"host\xff"])
def test_non_ascii_host_is_refused(raw: bytes) -> None:
    with pytest.raises(HeaderError, match="^host is not ASCII$"):
        decode(_with_host(raw))


@pytest.mark.parametrize(
    "raw",
    [b"two words", b" ", b"host ", b"a\tb", b"a\nb", b"a\x00b", b"\x7f", b"a\x1bb"],
    ids=repr,
)
def test_space_or_control_character_in_host_is_refused(raw: bytes) -> None:
    with pytest.raises(HeaderError, match="^host has unprintable characters$"):
        decode(_with_host(raw))


def test_with_host_helper_accepts_a_good_host() -> None:
    assert decode(_with_host(b"db.internal", port=5432)) == StreamHeader("db.internal", 5432)


# --- encode refusals ----------------------------------------------------------------------


@pytest.mark.parametrize("host", ["", "h" * (HOST_MAX + 1), "h" * 255])
def test_encode_refuses_bad_host_length(host: str) -> None:
    with pytest.raises(HeaderError, match="host must be 1-64 ASCII bytes"):
        StreamHeader(host, 80).encode()


@pytest.mark.parametrize("port", [0, 65536, -1, 1 << 20])
def test_encode_refuses_bad_port(port: int) -> None:
    with pytest.raises(HeaderError, match="port must be 1-65535"):
        StreamHeader("10.0.0.1", port).encode()


# --- properties ---------------------------------------------------------------------------


@settings(max_examples=500)
@given(st.binary(min_size=HEADER_SIZE, max_size=HEADER_SIZE))
def test_random_headers_raise_only_header_error(data: bytes) -> None:
    try:
        header = decode(data)
    except HeaderError:
        return
    assert header.encode() == data


@settings(max_examples=500)
@given(st.binary(min_size=HEADER_SIZE - 4, max_size=HEADER_SIZE - 4))
def test_random_bodies_with_valid_checksum_raise_only_header_error(body: bytes) -> None:
    data = _seal(body)
    try:
        header = decode(data)
    except HeaderError:
        return
    assert header.encode() == data  # anything accepted is canonical


@settings(max_examples=500)
@given(
    flags=st.integers(0, 255),
    length=st.integers(0, 255),
    reserved=st.sampled_from([0, 0, 0, 1, 255]),
    port=st.integers(0, 65535),
    host=st.binary(min_size=HOST_MAX, max_size=HOST_MAX)
    | st.binary(max_size=HOST_MAX).map(lambda b: b.ljust(HOST_MAX, b"\0")),
)
def test_structured_headers_raise_only_header_error(
    flags: int, length: int, reserved: int, port: int, host: bytes
) -> None:
    """Past the magic, version and checksum: every later check is reached."""
    body = struct.pack(f">4sBBBBH{HOST_MAX}s", MAGIC, VERSION, flags, length, reserved, port, host)
    data = _seal(body)
    try:
        header = decode(data)
    except HeaderError:
        return
    assert header.encode() == data


@given(st.binary(max_size=3 * HEADER_SIZE))
def test_any_length_raises_only_header_error(data: bytes) -> None:
    try:
        decode(data)
    except HeaderError:
        pass


@given(
    host=st.text(alphabet=HOST_ALPHABET, min_size=1, max_size=HOST_MAX),
    port=st.integers(1, 65535),
    probe=st.booleans(),
)
def test_round_trip_property(host: str, port: int, probe: bool) -> None:
    header = StreamHeader(host, port, probe)
    assert decode(header.encode()) == header


@pytest.mark.parametrize("host", ["café", "a b", "a\tb", "x\x00"])
def test_encode_refuses_what_decode_would(host: str) -> None:
    with pytest.raises(HeaderError):
        StreamHeader(host, 80).encode()
