"""The PROXY protocol through real loopback sockets: headers sent to the upstream (v1, v2,
IPv4, IPv6) and read from trusted peers (the route ACL and PROXY out then use the client it
names), refused from untrusted peers, malformed, late; ``peer_acl`` on the real peer."""

from __future__ import annotations

import asyncio
import time

import pytest

from godoxy_streams.streams import ConnContext, StreamOptions, TCPStream
from godoxy_streams.streams.acl import Acl
from godoxy_streams.streams.proxy_protocol import (
    ParseOutcome,
    ProxyHeaderParser,
    encode_v1,
    encode_v2,
    encode_v2_local,
)

from ..helpers import eventually_async
from .kit import (
    LOCAL,
    capture,
    connect,
    echo,
    ended,
    ipv6_loopback,
    read_all,
    tcp_backend,
    tcp_stream,
)

TRUSTED = Acl(allow=["127.0.0.1"])


def decode(data: bytes) -> ParseOutcome:
    outcome = ProxyHeaderParser().feed(data)
    assert outcome is not None, f"no complete PROXY header in {data[:40]!r}"
    return outcome


async def send_and_finish(addr: tuple[str, int], data: bytes, source: str) -> tuple[str, int]:
    """Connect from ``source``, send ``data`` at once, half-close, read to EOF; returns the
    client's address."""
    reader, writer = await connect(addr, source)
    writer.write(data)
    writer.write_eof()
    await read_all(reader)
    name = writer.get_extra_info("sockname")
    writer.close()
    return (name[0], name[1])


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_proxy_out_ipv4_header_before_first_client_byte(version: str) -> None:
    got: list[bytearray] = []
    async with (
        tcp_backend(capture(got)) as backend,
        tcp_stream(backend.addr, proxy_protocol=version) as stream,
    ):
        client = await send_and_finish(stream.local_addr, b"first bytes", "127.0.0.2")
        await eventually_async(lambda: stream.stats.active == 0, 3)
    header = decode(bytes(got[0]))
    assert header.version == (1 if version == "v1" else 2)
    assert header.source == client
    assert header.source[0] == "127.0.0.2"
    assert header.destination == stream.local_addr
    assert header.rest == b"first bytes"
    assert stream.stats.bytes_in == len(b"first bytes")  # the header is not client traffic


@pytest.mark.skipif(not ipv6_loopback(), reason="this host has no IPv6 loopback (::1)")
@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_proxy_out_ipv6(version: str) -> None:
    got: list[bytearray] = []
    async with (
        tcp_backend(capture(got), host="::1") as backend,
        tcp_stream(backend.addr, host="::1", proxy_protocol=version) as stream,
    ):
        client = await send_and_finish(stream.local_addr, b"six", "::1")
        await eventually_async(lambda: stream.stats.active == 0, 3)
    header = decode(bytes(got[0]))
    assert header.family == "INET6"
    assert header.source == ("::1", client[1])
    assert header.destination == stream.local_addr
    assert header.rest == b"six"


async def test_proxy_in_from_trusted_peer_becomes_the_client() -> None:
    """127.0.0.1 is trusted and says the client is 10.9.8.7: the route ACL judges 10.9.8.7
    and PROXY out carries it (and the destination the header named)."""
    got: list[bytearray] = []
    options = {
        "proxy_protocol_trusted": TRUSTED,
        "acl": Acl(allow=["10.9.8.7"]),
        "proxy_protocol": "v2",
    }
    async with tcp_backend(capture(got)) as backend, tcp_stream(backend.addr, **options) as stream:
        inbound = encode_v1(("10.9.8.7", 5555), ("10.0.0.1", 80))
        reader, writer = await connect(stream.local_addr, LOCAL)
        writer.write(inbound[:9])  # the header in pieces: parsed incrementally
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(inbound[9:] + b"payload")
        writer.write_eof()
        await read_all(reader)
        writer.close()
        await eventually_async(lambda: stream.stats.active == 0, 3)
        header = decode(bytes(got[0]))
        assert header.source == ("10.9.8.7", 5555)
        assert header.destination == ("10.0.0.1", 80)
        assert header.rest == b"payload"

        other = encode_v2(("10.9.8.8", 5555), ("10.0.0.1", 80))  # not allowed by the ACL
        reader, writer = await connect(stream.local_addr, LOCAL)
        writer.write(other + b"payload")
        assert await ended(reader, 3)
        writer.close()
        assert stream.stats.denied == 1
        assert backend.accepted == 1


async def test_proxy_in_local_command_keeps_the_peer() -> None:
    got: list[bytearray] = []
    options = {"proxy_protocol_trusted": TRUSTED, "proxy_protocol": "v1"}
    async with tcp_backend(capture(got)) as backend, tcp_stream(backend.addr, **options) as stream:
        client = await send_and_finish(stream.local_addr, encode_v2_local() + b"hc", LOCAL)
        await eventually_async(lambda: len(got) == 1 and stream.stats.active == 0, 3)
    header = decode(bytes(got[0]))
    assert header.source == client
    assert header.rest == b"hc"


async def test_proxy_in_from_untrusted_peer_is_closed() -> None:
    got: list[bytearray] = []
    async with (
        tcp_backend(capture(got)) as backend,
        tcp_stream(backend.addr, proxy_protocol_trusted=TRUSTED, proxy_protocol="v1") as stream,
    ):
        spoof = encode_v1(("10.9.8.7", 5555), ("10.0.0.1", 80))
        reader, writer = await connect(stream.local_addr, "127.0.0.2")
        writer.write(spoof + b"payload")
        assert await ended(reader, 3)
        writer.close()
        await eventually_async(lambda: stream.stats.active == 0, 3)
        assert stream.stats.proxy_errors == 1
        assert stream.stats.bytes_in == 0
        # the upstream may have seen the connection (dialled at once, for server-first
        # protocols) but nothing from the client: at most our own header
        for data in got:
            assert b"10.9.8.7" not in data and b"payload" not in data


async def test_untrusted_peer_prefix_of_signature_then_not_a_header() -> None:
    async with (
        tcp_backend(echo()) as backend,
        tcp_stream(backend.addr, proxy_protocol_trusted=TRUSTED) as stream,
    ):
        reader, writer = await connect(stream.local_addr, "127.0.0.2")
        writer.write(b"PRO")  # could still become "PROXY ": held back
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"MPT\r\n")
        async with asyncio.timeout(3):
            assert await reader.readexactly(8) == b"PROMPT\r\n"
        writer.close()
        assert stream.stats.proxy_errors == 0


async def test_untrusted_peer_relays_normally_server_first_included() -> None:
    async def banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 ready\r\n")
        await writer.drain()
        writer.write(await reader.read(100))
        await writer.drain()

    async with (
        tcp_backend(banner) as backend,
        tcp_stream(backend.addr, proxy_protocol_trusted=TRUSTED) as stream,
    ):
        reader, writer = await connect(stream.local_addr, "127.0.0.2")
        async with asyncio.timeout(3):
            assert await reader.readexactly(11) == b"220 ready\r\n"  # no waiting for bytes
        writer.write(b"\r\n")  # a strict prefix of the v2 signature: held back...
        await writer.drain()
        writer.write(b"HELO x\r\n")  # ...until the next bytes decide
        async with asyncio.timeout(3):
            assert await reader.readexactly(10) == b"\r\nHELO x\r\n"
        writer.close()
        assert stream.stats.proxy_errors == 0


@pytest.mark.parametrize(
    "garbage",
    [b"PROXY TCP4 bogus\r\n", b"GET / HTTP/1.0\r\n\r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"],
)
async def test_proxy_in_malformed_header_is_closed(garbage: bytes) -> None:
    async with (
        tcp_backend(echo()) as backend,
        tcp_stream(backend.addr, proxy_protocol_trusted=TRUSTED) as stream,
    ):
        reader, writer = await connect(stream.local_addr, LOCAL)
        writer.write(garbage)
        assert await ended(reader, 3)
        writer.close()
        await eventually_async(lambda: stream.stats.active == 0, 3)
        assert stream.stats.proxy_errors == 1
        assert backend.accepted == 0


async def test_proxy_in_header_timeout() -> None:
    async with (
        tcp_backend(echo()) as backend,
        tcp_stream(backend.addr, proxy_protocol_trusted=TRUSTED, proxy_header_timeout=0.3) as s,
    ):
        reader, writer = await connect(s.local_addr, LOCAL)
        writer.write(b"PROXY TCP4 ")
        started = time.monotonic()
        assert await ended(reader, 3)
        assert 0.25 <= time.monotonic() - started < 2.0
        writer.close()
        await eventually_async(lambda: s.stats.active == 0, 3)
        assert s.stats.proxy_errors == 1
        assert backend.accepted == 0


async def test_peer_acl_judges_the_real_peer() -> None:
    """Every 127/8 peer is trusted to send headers, but the global list admits only
    127.0.0.1 as a peer; the client named in the header is allowed either way."""
    options = {
        "proxy_protocol_trusted": Acl(allow=["127.0.0.0/8"]),
        "peer_acl": Acl(allow=["127.0.0.1"]),
        "acl": Acl(allow=["10.0.0.0/8"]),
    }
    header = encode_v1(("10.9.8.7", 5555), ("10.0.0.1", 80))
    async with tcp_backend(echo()) as backend, tcp_stream(backend.addr, **options) as stream:
        reader, writer = await connect(stream.local_addr, "127.0.0.5")
        writer.write(header + b"x")
        assert await ended(reader, 3)
        writer.close()
        assert stream.stats.denied == 1
        assert backend.accepted == 0
        reader, writer = await connect(stream.local_addr, LOCAL)
        writer.write(header + b"x")
        async with asyncio.timeout(3):
            assert await reader.readexactly(1) == b"x"
        writer.close()
        assert backend.accepted == 1


async def test_hooks_see_the_effective_client() -> None:
    seen: list[ConnContext] = []
    options = StreamOptions(proxy_protocol_trusted=TRUSTED, idle_timeout=5.0)
    async with tcp_backend(echo()) as backend:
        stream = TCPStream((LOCAL, 0), backend.addr, options=options)
        await stream.serve(pre_dial=seen.append)
        try:
            reader, writer = await connect(stream.local_addr, LOCAL)
            writer.write(encode_v2(("10.9.8.7", 5555), ("10.0.0.1", 80)) + b"hi")
            async with asyncio.timeout(3):
                assert await reader.readexactly(2) == b"hi"
            writer.close()
            assert seen[0].client == ("10.9.8.7", 5555)
            assert seen[0].local == stream.local_addr
        finally:
            await stream.close(on_stop="kill")
