"""The ClientHello reader: real hellos (Python ssl, openssl s_client) in every segmentation
and record fragmentation, truncation, non-TLS and SSLv2 first flights, crafted malformed
hellos, the size bound, and fuzzing (nothing but ClientHelloError ever escapes)."""

from __future__ import annotations

import ssl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from godoxy_streams.streams.tls.clienthello import (
    MAX_FLIGHT,
    ClientHello,
    ClientHelloError,
    ClientHelloReader,
    alert,
)

from ..tls_kit import CAPTURED, captured, client_hello, refragment

TLS13_HELLO = client_hello("a.example.test", alpn=["h2", "http/1.1"])
TLS12_HELLO = client_hello("b.example.test", maximum=ssl.TLSVersion.TLSv1_2)
NO_SNI_HELLO = client_hello(None)


def read(*chunks: bytes) -> ClientHello | None:
    reader = ClientHelloReader()
    result = None
    for chunk in chunks:
        result = reader.feed(chunk)
    return result


def error_of(*chunks: bytes) -> str:
    with pytest.raises(ClientHelloError) as info:
        read(*chunks)
    return info.value.kind


# --- crafted hellos ---


def ext(kind: int, data: bytes) -> bytes:
    return kind.to_bytes(2) + len(data).to_bytes(2) + data


def sni(*names: bytes, name_type: int = 0) -> bytes:
    entries = b"".join(bytes([name_type]) + len(n).to_bytes(2) + n for n in names)
    return ext(0, len(entries).to_bytes(2) + entries)


def body(
    extensions: bytes | None = b"",
    *,
    version: int = 0x0303,
    session: bytes = b"",
    suites: bytes = b"\x13\x01",
    compression: bytes = b"\x00",
) -> bytes:
    out = version.to_bytes(2) + bytes(32) + bytes([len(session)]) + session
    out += len(suites).to_bytes(2) + suites + bytes([len(compression)]) + compression
    if extensions is not None:
        out += len(extensions).to_bytes(2) + extensions
    return out


def flight(hello_body: bytes, *, message_type: int = 1) -> bytes:
    message = bytes([message_type]) + len(hello_body).to_bytes(3) + hello_body
    return b"\x16\x03\x01" + len(message).to_bytes(2) + message


# --- real hellos ---


@pytest.mark.parametrize(
    ("hello", "name", "alpn", "tls13"),
    [
        (TLS13_HELLO, "a.example.test", ("h2", "http/1.1"), True),
        (TLS12_HELLO, "b.example.test", (), False),
        (NO_SNI_HELLO, None, (), True),
    ]
    + [(captured(file), name, alpn, tls13) for file, name, alpn, tls13 in CAPTURED],
)
def test_real_hellos_whole_and_byte_by_byte(
    hello: bytes, name: str | None, alpn: tuple[str, ...], tls13: bool
) -> None:
    whole = read(hello)
    assert whole is not None
    assert (whole.server_name, whole.alpn, whole.legacy_version) == (name, alpn, 0x0303)
    assert (0x0304 in whole.versions) is tls13
    assert whole.length == len(hello)
    reader = ClientHelloReader()
    for i in range(len(hello) - 1):
        assert reader.feed(hello[i : i + 1]) is None
    assert reader.feed(hello[-1:]) == whole


def test_every_two_piece_split() -> None:
    expected = read(TLS13_HELLO)
    for cut in range(len(TLS13_HELLO) + 1):
        assert read(TLS13_HELLO[:cut], TLS13_HELLO[cut:]) == expected


@pytest.mark.parametrize("size", [1, 2, 7, 100, 300])
def test_hello_spread_over_records(size: int) -> None:
    fragmented = refragment(TLS13_HELLO, size)
    hello = read(fragmented)
    assert hello is not None and hello.server_name == "a.example.test"
    assert hello.length == len(fragmented)
    reader = ClientHelloReader()
    results = [reader.feed(fragmented[i : i + 1]) for i in range(len(fragmented))]
    assert results[-1] == hello and results[:-1] == [None] * (len(fragmented) - 1)


def test_bytes_after_the_hello_are_not_its_own() -> None:
    hello = read(TLS12_HELLO + b"\x17\x03\x03\x00\x05early")
    assert hello is not None and hello.length == len(TLS12_HELLO)


def test_feeding_after_the_result_or_an_error_repeats_it() -> None:
    reader = ClientHelloReader()
    hello = reader.feed(TLS13_HELLO)
    assert reader.feed(b"more") is hello
    reader.end()  # complete: EOF afterwards is no error
    bad = ClientHelloReader()
    with pytest.raises(ClientHelloError):
        bad.feed(b"GET /")
    with pytest.raises(ClientHelloError) as again:
        bad.feed(TLS13_HELLO)
    assert again.value.kind == "not_tls"


def test_every_truncation_needs_more_then_eof_is_truncated() -> None:
    for cut in range(len(TLS12_HELLO)):
        reader = ClientHelloReader()
        assert reader.feed(TLS12_HELLO[:cut]) is None
        with pytest.raises(ClientHelloError) as info:
            reader.end()
        assert info.value.kind == "truncated"


# --- not TLS ---


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "not_tls"),
        (b"SSH-2.0-OpenSSH_9.6\r\n", "not_tls"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "not_tls"),
        (b"\x16\x00", "not_tls"),
        (b"\x15\x03\x03\x00\x02\x02\x28", "not_tls"),  # an alert
        (b"\x80\x2e\x01\x03\x01\x00\x15", "sslv2"),  # SSLv2-compatible CLIENT-HELLO
        (b"\x80\x2e\x04", "not_tls"),
        (b"\x00", "not_tls"),
    ],
)
def test_not_tls_is_seen_early(data: bytes, kind: str) -> None:
    assert error_of(data) == kind


def test_first_bytes_that_could_still_be_tls_wait() -> None:
    assert read(b"\x16") is None
    assert read(b"\x80", b"\x2e") is None  # maybe SSLv2: the third byte decides


# --- malformed ---


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"\x16\x03\x01\x00\x00", "malformed"),  # empty handshake record
        (b"\x16\x03\x01\x40\x01", "malformed"),  # record longer than 2^14
        (flight(body(), message_type=2), "malformed"),  # a ServerHello
        (flight(body(version=0x0202)), "malformed"),
        (flight(body(session=bytes(33))), "malformed"),
        (flight(body(suites=b"\x13")), "malformed"),
        (flight(body(suites=b"")), "malformed"),
        (flight(body(compression=b"")), "malformed"),
        (flight(body(sni(b"a.test")) + b"x"), "malformed"),  # bytes after the extensions
        (flight(body(sni(b"a.test") + ext(0, b""))), "malformed"),  # extension twice
        (flight(body(sni(b"a.test", b"b.test"))), "malformed"),  # two host names
        (flight(body(sni(b""))), "malformed"),
        (flight(body(sni(b"a\x00b"))), "malformed"),
        (flight(body(sni(b"\xff\xfe"))), "malformed"),
        (flight(body(sni(b"a" * 256))), "malformed"),
        (flight(body(ext(0, b"\x00\x10\x00"))), "malformed"),  # list longer than extension
        (flight(body(ext(16, b"\x00\x00"))), "malformed"),  # empty ALPN list
        (flight(body(ext(16, b"\x00\x01\x00"))), "malformed"),  # empty ALPN name
        (flight(body(ext(43, b"\x03\x03\x04\x03"))), "malformed"),  # odd versions list
        (flight(body(b"\x00")), "malformed"),  # extensions block cut short
        (flight(body()) + b"\x14\x03\x03\x00\x01\x01", None),  # complete before the CCS
        (b"\x16\x03\x01\x00\x01\x01" + b"\x14\x03\x03\x00\x01\x01", "malformed"),
    ],
)
def test_malformed(data: bytes, kind: str | None) -> None:
    if kind is None:
        assert read(data) is not None
    else:
        assert error_of(data) == kind


def test_crafted_hello_fields() -> None:
    hello = read(
        flight(
            body(
                sni(b"other-type", name_type=7)
                + ext(16, b"\x00\x06\x02h2\x02\xff\x01")
                + ext(43, b"\x04\x03\x04\x03\x03")
            )
        )
    )
    assert hello == ClientHello(0x0303, None, ("h2", "\xff\x01"), (0x0304, 0x0303), hello.length)
    no_extensions = read(flight(body(None, version=0x0301)))
    assert no_extensions is not None and no_extensions.server_name is None
    assert no_extensions.alert_version == 0x0301
    utf8 = read(flight(body(sni("café.example".encode()))))
    assert utf8 is not None and utf8.server_name == "café.example"


# --- the bound ---


def test_a_hello_larger_than_the_bound_is_refused_at_its_header() -> None:
    assert error_of(b"\x16\x03\x01\x40\x00\x01\x00\x40\x00") == "too_large"


def test_records_that_never_complete_a_hello_stop_at_the_bound() -> None:
    header = b"\x01\x00\x30\x00"  # a ClientHello of 12 KiB, sent in 1-byte records
    records = [b"\x16\x03\x01\x00\x01" + bytes([b]) for b in header] + [
        b"\x16\x03\x01\x00\x01\x00"
    ] * (MAX_FLIGHT // 6)
    reader = ClientHelloReader()
    with pytest.raises(ClientHelloError) as info:
        for record in records:
            reader.feed(record)
    assert info.value.kind == "too_large"
    assert reader.seen == MAX_FLIGHT


def test_one_huge_feed_keeps_only_the_bound() -> None:
    reader = ClientHelloReader()
    with pytest.raises(ClientHelloError):
        reader.feed(b"\x16\x03\x01\x40\x00" + bytes(1 << 20))
    assert reader.seen <= MAX_FLIGHT


def test_alert_record() -> None:
    assert alert(0x0303, 112) == b"\x15\x03\x03\x00\x02\x02\x70"
    tls13 = read(TLS13_HELLO)
    assert tls13 is not None and tls13.alert_version == 0x0303


# --- fuzzing ---


def _chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def check_reader(data: bytes, cuts: list[int]) -> ClientHello | None:
    """Feeding ``data`` in pieces raises nothing but ClientHelloError, and the outcome does
    not depend on the pieces."""
    outcomes = []
    for chunks in (_chunked(data, cuts), [data]):
        reader = ClientHelloReader()
        try:
            result = None
            for chunk in chunks:
                result = reader.feed(chunk) or result
            outcomes.append(result)
        except ClientHelloError as exc:
            outcomes.append(exc.kind)
    assert outcomes[0] == outcomes[1]
    return outcomes[0] if isinstance(outcomes[0], ClientHello) else None


_REAL = st.sampled_from([TLS13_HELLO, TLS12_HELLO, NO_SNI_HELLO, refragment(TLS13_HELLO, 50)])


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(_REAL))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif len(data) > 1:
            del data[at]
    return bytes(data)


_CUTS = st.lists(st.integers(0, 400), max_size=8)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), _CUTS)
def test_fuzz_any_bytes(data: bytes, cuts: list[int]) -> None:
    check_reader(data, cuts)


@settings(max_examples=300, deadline=None)
@given(_mutated(), _CUTS)
def test_fuzz_mutated_real_hellos(data: bytes, cuts: list[int]) -> None:
    check_reader(data, cuts)


@settings(max_examples=100, deadline=None)
@given(_REAL, _CUTS)
def test_fuzz_real_hellos_any_chunking(data: bytes, cuts: list[int]) -> None:
    assert check_reader(data, cuts) == read(data)
