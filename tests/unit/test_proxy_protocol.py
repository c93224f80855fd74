"""PROXY protocol v1/v2: known answers, round trips fed in chunks, and malformed headers."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from godoxy_streams.errors import ProxyProtocolError, StreamsError
from godoxy_streams.streams.proxy_protocol import (
    V2_SIGNATURE,
    ParseOutcome,
    ProxyHeaderParser,
    crc32c,
    detect,
    encode_header,
    encode_v1,
    encode_v1_unknown,
    encode_v2,
    encode_v2_local,
)

SIG = b"\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a"
# HAProxy's own v2 header for 172.19.0.1:42578 -> 172.19.0.3:80 (TCP over IPv4).
HAPROXY_V2_TCP4 = SIG + bytes.fromhex("2111000c ac130001 ac130003 a652 0050")
# An AWS NLB header: CRC32C TLV, a custom (0xEA, VPC endpoint) TLV and NOOP padding.
AWS_V2_CRC = (
    SIG
    + bytes.fromhex(
        "21110054 ac1f0771 ac1f0a1f c8f20050 030004 e8d6892d ea0017 01"
        + b"vpce-08d2bf15fac5001c9".hex()
        + "040024"
    )
    + bytes(36)
)
V6_SRC, V6_DST = "2001:db8::1", "2001:db8::ffff:2"


def parse(data: bytes) -> ParseOutcome:
    outcome = ProxyHeaderParser().feed(data)
    assert outcome is not None
    return outcome


def test_signature_is_the_specs() -> None:
    assert V2_SIGNATURE == SIG


# --- known answers ---


def test_v1_tcp4_known_answer() -> None:
    header = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
    assert encode_v1(("192.168.0.1", 56324), ("192.168.0.11", 443)) == header
    outcome = parse(header + b"GET / HTTP/1.1\r\n")
    assert (outcome.version, outcome.command, outcome.family, outcome.transport) == (
        1,
        "PROXY",
        "INET",
        "STREAM",
    )
    assert outcome.source == ("192.168.0.1", 56324)
    assert outcome.destination == ("192.168.0.11", 443)
    assert outcome.header_length == len(header)
    assert outcome.rest == b"GET / HTTP/1.1\r\n"


def test_v1_tcp6_known_answer() -> None:
    header = f"PROXY TCP6 {V6_SRC} {V6_DST} 1 65535\r\n".encode()
    assert encode_v1((V6_SRC, 1), (V6_DST, 65535)) == header
    outcome = parse(header)
    assert outcome.family == "INET6"
    assert outcome.source == (V6_SRC, 1) and outcome.destination == (V6_DST, 65535)


@pytest.mark.parametrize(
    "header",
    [
        b"PROXY UNKNOWN\r\n",
        b"PROXY UNKNOWN " + b"ffff:" * 7 + b"ffff " + b"ffff:" * 7 + b"ffff 65535 65535\r\n",
        b"PROXY UNKNOWN anything \x01\xff at all\r\n",
    ],
)
def test_v1_unknown_ignores_the_rest_of_the_line(header: bytes) -> None:
    assert len(header) <= 107
    outcome = parse(header + b"x")
    assert (outcome.family, outcome.source, outcome.destination) == ("UNSPEC", None, None)
    assert outcome.rest == b"x" and outcome.header_length == len(header)
    assert encode_v1_unknown() == b"PROXY UNKNOWN\r\n"


def test_v1_longest_line_is_107_bytes() -> None:
    longest = b"PROXY UNKNOWN " + b"ffff:" * 7 + b"ffff " + b"ffff:" * 7 + b"ffff 65535 65535\r\n"
    assert len(longest) == 107


def test_v2_tcp4_known_answer() -> None:
    assert encode_v2(("172.19.0.1", 42578), ("172.19.0.3", 80)) == HAPROXY_V2_TCP4
    outcome = parse(HAPROXY_V2_TCP4 + b"GET /")
    assert (outcome.version, outcome.command, outcome.family, outcome.transport) == (
        2,
        "PROXY",
        "INET",
        "STREAM",
    )
    assert outcome.source == ("172.19.0.1", 42578)
    assert outcome.destination == ("172.19.0.3", 80)
    assert outcome.header_length == 28 and outcome.rest == b"GET /" and outcome.tlvs == {}


def test_v2_udp6_known_answer() -> None:
    src, dst = ipaddress.IPv6Address(V6_SRC), ipaddress.IPv6Address(V6_DST)
    expected = SIG + b"\x21\x22\x00\x24" + src.packed + dst.packed + b"\x00\x35\x13\x88"
    assert encode_v2((V6_SRC, 53), (V6_DST, 5000), proto="udp") == expected
    outcome = parse(expected)
    assert (outcome.family, outcome.transport) == ("INET6", "DGRAM")
    assert outcome.source == (V6_SRC, 53) and outcome.destination == (V6_DST, 5000)


def test_v2_local_known_answer() -> None:
    assert encode_v2_local() == SIG + b"\x20\x00\x00\x00"
    outcome = parse(encode_v2_local() + b"ping")
    assert (outcome.command, outcome.family, outcome.source, outcome.destination) == (
        "LOCAL",
        "UNSPEC",
        None,
        None,
    )
    assert outcome.rest == b"ping"


def test_v2_local_discards_its_block_whatever_the_family() -> None:
    outcome = parse(SIG + b"\x20\xff\x00\x03abc" + b"data")
    assert outcome.command == "LOCAL" and outcome.tlvs == {} and outcome.rest == b"data"


def test_crc32c_known_answer() -> None:
    assert crc32c(b"123456789") == 0xE3069283


def test_v2_aws_header_with_crc32c_and_tlvs() -> None:
    outcome = parse(AWS_V2_CRC)
    assert outcome.source == ("172.31.7.113", 51442)
    assert outcome.destination == ("172.31.10.31", 80)
    assert outcome.tlvs[0xEA] == b"\x01vpce-08d2bf15fac5001c9"
    assert outcome.tlvs[0x03] == bytes.fromhex("e8d6892d")
    assert 0x04 not in outcome.tlvs  # NOOP is ignored


def test_v2_crc32c_mismatch_is_rejected() -> None:
    tampered = bytearray(AWS_V2_CRC)
    tampered[16] ^= 1  # the source address
    with pytest.raises(ProxyProtocolError, match="CRC32C"):
        parse(bytes(tampered))


def test_v2_unspec_proxy_keeps_tlvs() -> None:
    outcome = parse(SIG + b"\x21\x00\x00\x05" + b"\x02\x00\x02hi")
    assert outcome.command == "PROXY" and outcome.source is None
    assert outcome.tlvs == {0x02: b"hi"}


def test_v2_unix_addresses() -> None:
    block = b"/run/a.sock".ljust(108, b"\x00") + b"/run/b.sock".ljust(108, b"\x00")
    outcome = parse(SIG + b"\x21\x31\x00\xd8" + block)
    assert outcome.family == "UNIX"
    assert outcome.source == ("/run/a.sock", 0) and outcome.destination == ("/run/b.sock", 0)


def test_v2_tlvs_round_trip() -> None:
    header = encode_v2(("10.0.0.1", 1), ("10.0.0.2", 2), tlvs={0x02: b"example.com", 0xE0: b""})
    assert parse(header).tlvs == {0x02: b"example.com", 0xE0: b""}


# --- encoder family handling ---


def test_mapped_addresses_are_sent_as_ipv4() -> None:
    assert encode_v1(("::ffff:10.0.0.1", 1), ("::ffff:10.0.0.2", 2)).startswith(b"PROXY TCP4 ")
    assert parse(encode_v2(("::ffff:10.0.0.1", 1), ("10.0.0.2", 2))).family == "INET"


def test_mixed_families_map_ipv4_into_ipv6() -> None:
    header = encode_v1(("10.0.0.1", 1), ("::1", 2))
    assert header == b"PROXY TCP6 ::ffff:a00:1 ::1 1 2\r\n"
    outcome = parse(encode_v2(("::1", 1), ("10.0.0.1", 2)))
    assert outcome.family == "INET6" and outcome.destination == ("::ffff:a00:1", 2)


def test_scope_ids_are_dropped() -> None:
    assert encode_v1(("fe80::1%eth0", 1), ("fe80::2", 2)) == b"PROXY TCP6 fe80::1 fe80::2 1 2\r\n"


@pytest.mark.parametrize(
    ("src", "dst"),
    [(("10.0.0.1", 70000), ("10.0.0.2", 1)), (("host.example", 1), ("10.0.0.2", 1))],
)
def test_encoder_rejects_bad_endpoints(src: tuple[str, int], dst: tuple[str, int]) -> None:
    with pytest.raises(ValueError):
        encode_v1(src, dst)


def test_encode_header_dispatches_and_refuses_v1_udp() -> None:
    src, dst = ("10.0.0.1", 1), ("10.0.0.2", 2)
    assert encode_header("v1", src, dst, "tcp") == encode_v1(src, dst)
    assert encode_header("v2", src, dst, "udp") == encode_v2(src, dst, proto="udp")
    with pytest.raises(ValueError):
        encode_header("v1", src, dst, "udp")


# --- detection and parser state ---


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", None),
        (b"PRO", None),
        (b"PROXY", None),
        (b"PROXY ", True),
        (b"PROXY TCP4 ", True),
        (b"\r\n\r\n\x00", None),
        (SIG, True),
        (SIG + b"\x21", True),
        (b"GET / HTTP/1.1", False),
        (b"PROXX", False),
        (b"\r\n\r\nX", False),
        (b"\x16\x03\x01", False),
    ],
)
def test_detect(data: bytes, expected: bool | None) -> None:
    assert detect(data) is expected


def test_feed_waits_for_more_bytes() -> None:
    parser = ProxyHeaderParser()
    header = HAPROXY_V2_TCP4
    for byte in header[:-1]:
        assert parser.feed(bytes([byte])) is None
    outcome = parser.feed(header[-1:] + b"tail")
    assert outcome is not None and outcome.rest == b"tail"
    with pytest.raises(RuntimeError):
        parser.feed(b"more")


def test_errors_are_sticky_and_streams_errors() -> None:
    parser = ProxyHeaderParser()
    with pytest.raises(ProxyProtocolError) as first:
        parser.feed(b"GET /")
    assert isinstance(first.value, StreamsError)
    with pytest.raises(ProxyProtocolError):
        parser.feed(b"PROXY ")


def test_eof_inside_a_header_is_an_error() -> None:
    parser = ProxyHeaderParser()
    assert parser.feed(b"PROXY TCP4 1.2.3.4") is None
    with pytest.raises(ProxyProtocolError, match="ended"):
        parser.feed_eof()
    done = ProxyHeaderParser()
    assert done.feed(encode_v2_local()) is not None
    done.feed_eof()


# --- malformed input ---

V1_BAD = [
    b"GET / HTTP/1.1\r\n",
    b"PROXY\r\n",
    b"PROXY \r\n",
    b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
    b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
    b"PROXY UNKNOWNX\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 80\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
    b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 0080\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 0x10 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 999999999999 2\r\n",
    b"PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n",
    b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
    b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
    b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
    b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
    b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
    b"PROXY TCP6 ::g ::1 1 2\r\n",
    b"PROXY TCP4 host 5.6.7.8 1 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \xd9\xa1\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1\t2\r\n",
    b"PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
    b"PROXY UNKNOWN\n",
    b"PROXY UNKNOWN " + b"x" * 93 + b"\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2" + b" " * 100,
]


@pytest.mark.parametrize("data", V1_BAD)
def test_malformed_v1_is_rejected(data: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        parse(data)


V2_BAD = [
    SIG[:11] + b"X" + b"\x21\x11\x00\x0c" + bytes(12),
    SIG + b"\x11\x11\x00\x0c" + bytes(12),
    SIG + b"\x31\x11\x00\x0c" + bytes(12),
    SIG + b"\x22\x11\x00\x0c" + bytes(12),
    SIG + b"\x2f\x11\x00\x0c" + bytes(12),
    SIG + b"\x21\x13\x00\x0c" + bytes(12),
    SIG + b"\x21\x10\x00\x0c" + bytes(12),
    SIG + b"\x21\x01\x00\x0c" + bytes(12),
    SIG + b"\x21\x41\x00\x0c" + bytes(12),
    SIG + b"\x21\x11\x00\x0b" + bytes(11),
    SIG + b"\x21\x21\x00\x0c" + bytes(12),
    SIG + b"\x21\x31\x00\x24" + bytes(36),
    SIG + b"\x21\x11\x00\x0e" + bytes(14),
    SIG + b"\x21\x11\x00\x0f" + bytes(12) + b"\x02\x00\x01",
    SIG + b"\x21\x11\x00\x10" + bytes(12) + b"\x03\x00\x01\x00",
    SIG + b"\x21\x11\x00\x1a" + bytes(12) + (b"\x03\x00\x04" + bytes(4)) * 2,
    SIG + b"\x21\x11\x00\x13" + bytes(12) + b"\x03\x00\x04" + bytes(4),
]


@pytest.mark.parametrize("data", V2_BAD)
def test_malformed_v2_is_rejected(data: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        parse(data)


def test_oversized_v2_is_rejected_before_it_is_buffered() -> None:
    parser = ProxyHeaderParser()
    with pytest.raises(ProxyProtocolError, match="too long"):
        parser.feed(SIG + b"\x21\x11" + (12 + 4097).to_bytes(2, "big"))
    fits = SIG + b"\x21\x11\x00\x14" + bytes(12) + b"\x04\x00\x05" + bytes(5)
    assert ProxyHeaderParser(max_tlv_bytes=8).feed(fits) is not None
    with pytest.raises(ProxyProtocolError, match="too long"):
        ProxyHeaderParser(max_tlv_bytes=7).feed(fits)
    with pytest.raises(ProxyProtocolError):
        ProxyHeaderParser().feed(SIG + b"\x20\x00\xff\xff")


def test_v1_without_crlf_is_rejected_at_107_bytes() -> None:
    parser = ProxyHeaderParser()
    assert parser.feed(b"PROXY UNKNOWN " + b"x" * 92) is None  # 106 bytes
    with pytest.raises(ProxyProtocolError, match="107"):
        parser.feed(b"x")


# --- round trips ---

PORTS = st.integers(0, 65535)
ENDPOINTS = st.tuples(st.ip_addresses().map(str), PORTS)


@st.composite
def chunked(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False)]


def expected_pair(src: str, dst: str) -> tuple[str, str]:
    def unmapped(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        address = ipaddress.ip_address(text)
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            return address.ipv4_mapped
        return address

    a, b = unmapped(src), unmapped(dst)
    if a.version != b.version:
        a, b = (ipaddress.IPv6Address(f"::ffff:{x}") if x.version == 4 else x for x in (a, b))
    return str(a), str(b)


@settings(max_examples=300, deadline=None)
@given(
    ENDPOINTS,
    ENDPOINTS,
    st.sampled_from(["v1", "v2-tcp", "v2-udp"]),
    st.binary(max_size=20),
    st.data(),
)
def test_round_trip_in_chunks(
    src: tuple[str, int],
    dst: tuple[str, int],
    kind: str,
    payload: bytes,
    data: st.DataObject,
) -> None:
    if kind == "v1":
        header = encode_v1(src, dst)
        assert len(header) <= 107
    else:
        header = encode_v2(src, dst, proto="tcp" if kind == "v2-tcp" else "udp")
    parser = ProxyHeaderParser()
    outcome = None
    chunks = data.draw(chunked(header + payload))
    for index, chunk in enumerate(chunks):
        outcome = parser.feed(chunk)
        if outcome is not None:
            rest = outcome.rest + b"".join(chunks[index + 1 :])
            break
    assert outcome is not None
    assert outcome.header_length == len(header)
    assert rest == payload
    want_src, want_dst = expected_pair(src[0], dst[0])
    assert outcome.source is not None and outcome.destination is not None
    assert ipaddress.ip_address(outcome.source[0]) == ipaddress.ip_address(want_src)
    assert ipaddress.ip_address(outcome.destination[0]) == ipaddress.ip_address(want_dst)
    assert (outcome.source[1], outcome.destination[1]) == (src[1], dst[1])
    assert outcome.transport == ("DGRAM" if kind == "v2-udp" else "STREAM")
