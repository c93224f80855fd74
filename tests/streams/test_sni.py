"""SNI passthrough through real loopback sockets: one listen socket, TLS upstreams (Python
ssl servers) chosen by server name, each client seeing its upstream's own certificate; the
default route; no match (alert unrecognized_name); ClientHellos in 1-byte segments and in
several records; non-TLS, malformed and silent clients; per-route ACL, PROXY out and close
records; conflicts and routes leaving; openssl s_client as a real client."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from godoxy_streams.agent.certs import CertFiles
from godoxy_streams.server_names import alias_pattern
from godoxy_streams.streams import ConnRecord, TCPStream
from godoxy_streams.streams.acl import Acl

from ..helpers import eventually_async
from ..tls_kit import certificate_set, client_context, client_hello, refragment, server_context
from .kit import Backend, capture, connect, echo, ended, read_all, tcp_backend
from .sni_kit import (
    BIOClient,
    SNIHarness,
    assert_pending_caps,
    no_verify,
    san,
    sni_harness,
    tls_exchange,
)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CertFiles]:
    base = tmp_path_factory.mktemp("sni")
    return certificate_set(base, a="a.example.test", b="b.example.test", any="fallback.test")


@contextlib.asynccontextmanager
async def tls_echo(files: CertFiles, tag: bytes) -> AsyncIterator[Backend]:
    async with tcp_backend(echo(tag), tls=server_context(files)) as backend:
        yield backend


Sites = tuple[SNIHarness, dict[str, TCPStream], dict[str, Backend]]


@contextlib.asynccontextmanager
async def sites(certs: dict[str, CertFiles], **routes: list[str]) -> AsyncIterator[Sites]:
    """An SNI listener with a route per keyword: its names, to a TLS echo upstream with the
    certificate of that key, which tags its replies ``key:``."""
    async with contextlib.AsyncExitStack() as stack:
        sni = await stack.enter_async_context(sni_harness())
        streams, backends = {}, {}
        for key, names in routes.items():
            backend = await stack.enter_async_context(tls_echo(certs[key], f"{key}:".encode()))
            backends[key] = backend
            streams[key] = sni.add(key, backend.addr, names)
        yield sni, streams, backends


async def test_two_names_on_one_port_reach_two_tls_upstreams(certs: dict[str, CertFiles]) -> None:
    async with sites(certs, a=["a.example.test"], b=["*.example.test"]) as (sni, streams, _):
        ctx_a, ctx_b = client_context(certs["a"].ca), client_context(certs["b"].ca)
        got, cert = await tls_exchange(sni.addr, ctx_a, "a.example.test", b"hi", 4)
        assert (got, san(cert)) == (b"a:hi", ["a.example.test"])
        got, cert = await tls_exchange(sni.addr, ctx_b, "b.example.test", b"yo", 4)
        assert (got, san(cert)) == (b"b:yo", ["b.example.test"])
        a, b = streams["a"].stats, streams["b"].stats
        await eventually_async(lambda: a.active == b.active == 0, 3)
        assert (a.total, b.total) == (1, 1)
        assert a.bytes_in > 200  # the ClientHello went through the stream
        assert sni.listener.stats.routed == 2


async def test_the_default_route_takes_other_names_and_none(certs: dict[str, CertFiles]) -> None:
    async with sites(certs, a=["a.example.test"], any=["*"]) as (sni, _, backends):
        for name in ("other.test", None):
            got, cert = await tls_exchange(sni.addr, no_verify(), name, b"x", 5)
            assert (got, cert) == (b"any:x", {})  # (not verified: no certificate details)
        assert backends["any"].accepted == 2 and backends["a"].accepted == 0


async def test_no_match_gets_alert_unrecognized_name(certs: dict[str, CertFiles]) -> None:
    async with sites(certs, a=["a.example.test"]) as (sni, _, backends):
        for name in ("nobody.test", None):
            with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
                await tls_exchange(sni.addr, no_verify(), name, b"x", 3)
        assert sni.listener.stats.no_match == 2
        assert backends["a"].accepted == 0


@pytest.mark.parametrize("records", [None, 40], ids=["one-record", "40-byte-records"])
async def test_client_hello_in_one_byte_segments(
    certs: dict[str, CertFiles], records: int | None
) -> None:
    async with sites(certs, a=["a.example.test"]) as (sni, _, _):
        client = BIOClient(client_context(certs["a"].ca), "a.example.test")
        hello = client.hello if records is None else refragment(client.hello, records)
        reader, writer = await connect(sni.addr)
        pending = sni.listener.pending

        def seen(count: int) -> bool:
            return bool(pending) and next(iter(pending)).reader.seen == count

        for i, byte in enumerate(hello[:-1]):
            writer.write(bytes([byte]))
            await eventually_async(
                lambda: seen(i + 1),  # noqa: B023 (awaited before the loop moves on)
                3,
                interval=0.001,
                what=f"byte {i + 1} read on its own",
            )
        writer.write(hello[-1:])
        await client.finish(reader, writer)
        assert await client.exchange(reader, writer, b"split", 7) == b"a:split"
        assert san(client.obj.getpeercert()) == ["a.example.test"]
        writer.close()


@pytest.mark.parametrize(
    ("first", "counter"),
    [
        (b"GET / HTTP/1.1\r\nHost: a.example.test\r\n\r\n", "not_tls"),
        (b"\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10", "not_tls"),  # SSLv2-style
        (b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00", "malformed"),  # a ServerHello
        (b"", "empty"),
        (client_hello("a.example.test")[:100], "malformed"),  # truncated, then EOF
    ],
)
async def test_bad_first_flights_are_closed_and_counted(
    certs: dict[str, CertFiles], first: bytes, counter: str
) -> None:
    async with sites(certs, a=["*"]) as (sni, _, backends):
        reader, writer = await connect(sni.addr)
        writer.write(first)
        writer.write_eof()
        assert await read_all(reader) == b""
        writer.close()
        await eventually_async(lambda: getattr(sni.listener.stats, counter) == 1, 3)
        assert backends["a"].accepted == 0 and not sni.listener.pending


async def test_a_silent_client_times_out(certs: dict[str, CertFiles]) -> None:
    async with sni_harness(hello_timeout=0.2) as sni:
        sni.add("a", ("127.0.0.1", 9), ["*"])
        reader, writer = await connect(sni.addr)
        writer.write(b"\x16\x03")
        assert await ended(reader)
        writer.close()
        assert sni.listener.stats.timed_out == 1


async def test_pending_hellos_are_capped_in_all_and_per_source() -> None:
    async with sni_harness(max_pending=2, max_pending_per_source=1) as sni:
        sni.add("a", ("127.0.0.1", 9), ["*"])
        await assert_pending_caps(sni)


async def test_acl_proxy_protocol_and_records_apply_per_route() -> None:
    seen: list[bytearray] = []
    records: list[ConnRecord] = []
    hello = client_hello("a.example.test")
    async with tcp_backend(capture(seen)) as up, sni_harness() as sni:
        a = sni.add("a", up.addr, ["a.example.test"], proxy_protocol="v1", on_close=records.append)
        b = sni.add("b", up.addr, ["b.example.test"], acl=Acl(deny=["127.0.0.1"]))
        _, writer = await connect(sni.addr)
        writer.write(hello)
        writer.write_eof()
        await eventually_async(lambda: records, 3)
        writer.close()
        header, _, rest = bytes(seen[0]).partition(b"\r\n")
        assert header.startswith(b"PROXY TCP4 127.0.0.1 127.0.0.1 ")
        assert header.endswith(f" {sni.addr[1]}".encode())
        assert rest == hello  # replayed unchanged, after our header
        assert (records[0].stream, records[0].bytes_in) == ("a", len(hello))
        reader, writer = await connect(sni.addr)
        writer.write(client_hello("b.example.test"))
        assert await ended(reader)
        writer.close()
        assert (b.stats.denied, a.stats.total, up.accepted) == (1, 1, 1)


async def test_conflicts_keep_the_older_route_and_routes_leave(
    certs: dict[str, CertFiles],
) -> None:
    async with (
        tls_echo(certs["a"], b"1:") as one,
        tls_echo(certs["a"], b"2:") as two,
        sni_harness() as sni,
    ):
        sni.add("old", one.addr, [alias_pattern("a")])
        sni.add("new", two.addr, [alias_pattern("a"), "b.example.test"])
        assert [(str(c.pattern), c.owner.stream.name) for c in sni.conflicts] == [("a.*", "old")]
        ctx = client_context(certs["a"].ca)
        assert (await tls_exchange(sni.addr, ctx, "a.example.test", b"x", 3))[0] == b"1:x"
        sni.listener.set_routes(sni.routes[1:])  # the older route leaves: the name moves
        assert (await tls_exchange(sni.addr, ctx, "a.example.test", b"x", 3))[0] == b"2:x"
        sni.listener.set_routes([])
        with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
            await tls_exchange(sni.addr, ctx, "a.example.test", b"x", 3)


async def s_client(port: int, name: str, ca: Path, data: bytes, expect: bytes) -> str:
    """``openssl s_client -servername``: send ``data``, wait for ``expect`` (or the end);
    returns what it printed (stdout and stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *("openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", name),
        *("-CAfile", str(ca), "-verify_return_error", "-quiet"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdin.write(data)
    out = b""
    try:
        async with asyncio.timeout(10):
            while expect not in out and (chunk := await proc.stdout.read(4096)):
                out += chunk
    finally:
        if proc.returncode is None:
            proc.kill()
        err = await proc.stderr.read()
        await proc.wait()
    return (out + err).decode(errors="replace")


async def test_openssl_s_client(certs: dict[str, CertFiles]) -> None:
    async with sites(certs, a=["a.example.test"], b=["b.example.test"]) as (sni, _, _):
        port = sni.addr[1]
        printed = await s_client(port, "b.example.test", certs["b"].ca, b"ping\n", b"b:ping")
        assert "b:ping" in printed and "verify return:1" in printed
        printed = await s_client(port, "c.example.test", certs["a"].ca, b"ping\n", b"never")
        assert "unrecognized name" in printed
