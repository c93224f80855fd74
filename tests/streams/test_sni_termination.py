"""TLS termination on the SNI listener through real loopback sockets: certificates from the
operator's folder picked by name, plaintext upstreams, client certificates required per
route (refused without one), names without a certificate, and a slow handshake.

Where every route of a socket terminates without client certificates, the listener hands
each connection to TLS at once and OpenSSL's server-name callback picks the route
(``tls.direct``); what a client meets there is checked as on the ``HelloReader`` path:
routes by name, the default route, alerts for no route and no certificate, a ClientHello in
1-byte segments, the pending caps and the hello timeout, counted outcomes for clients that
are not TLS, break their hello or leave; and a passthrough route or a client CA on the
socket sends it back to reading the ClientHello itself."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path

import pytest

from godoxy_streams.agent.certs import CertFiles
from godoxy_streams.runtime.certificates import CertificateDirectory, TLSContexts
from godoxy_streams.streams import ConnRecord
from godoxy_streams.streams.tls.listener import HelloReader

from ..helpers import eventually_async
from ..tls_kit import certificate_set, certificates, client_context, client_hello, install
from .kit import connect, echo, ended, read_all, tcp_backend
from .sni_kit import BIOClient, SNIHarness, assert_pending_caps, san, sni_harness, tls_exchange

NAME = "mqtt.example.test"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CertFiles]:
    return certificate_set(
        tmp_path_factory.mktemp("term"),
        mqtt="mqtt.example.test",
        wild="*.apps.test",
        clients="unused.test",
    )


@pytest.fixture
def contexts(tmp_path: Path, made: dict[str, CertFiles]) -> TLSContexts:
    install(tmp_path / "certs", "mqtt", made["mqtt"])
    install(tmp_path / "certs", "apps", made["wild"], bundle=True)
    contexts = TLSContexts(CertificateDirectory(tmp_path / "certs"))
    contexts.refresh()
    return contexts


async def test_termination_relays_plaintext(
    made: dict[str, CertFiles], contexts: TLSContexts
) -> None:
    records: list[ConnRecord] = []
    async with tcp_backend(echo(b"M:")) as plain, sni_harness() as sni:
        stream = sni.add(
            "mqtt", plain.addr, ["mqtt.example.test"], contexts=contexts, on_close=records.append
        )
        ctx = client_context(made["mqtt"].ca)
        got, cert = await tls_exchange(sni.addr, ctx, "mqtt.example.test", b"hello", 7)
        assert (got, san(cert)) == (b"M:hello", ["mqtt.example.test"])
        await eventually_async(lambda: records, 3)
        assert (records[0].bytes_in, records[0].bytes_out) == (5, 7)  # plaintext only
        assert (sni.listener.stats.handshakes, stream.stats.total) == (1, 1)


async def test_wildcard_certificate_and_a_name_without_one(
    made: dict[str, CertFiles], contexts: TLSContexts
) -> None:
    async with tcp_backend(echo(b"W:")) as plain, sni_harness() as sni:
        sni.add("apps", plain.addr, ["*.apps.test", "bare.test"], contexts=contexts)
        ctx = client_context(made["wild"].ca)
        got, cert = await tls_exchange(sni.addr, ctx, "x.apps.test", b"a", 3)
        assert (got, san(cert)) == (b"W:a", ["*.apps.test"])
        with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
            await tls_exchange(sni.addr, ctx, "bare.test", b"a", 3)
        assert sni.listener.stats.no_certificate == 1
        assert plain.accepted == 1


async def test_a_required_client_certificate(
    made: dict[str, CertFiles], contexts: TLSContexts
) -> None:
    async with tcp_backend(echo(b"M:")) as plain, sni_harness() as sni:
        ca = str(made["clients"].ca)
        stream = sni.add("mqtt", plain.addr, ["mqtt.example.test"], contexts=contexts, client_ca=ca)
        anonymous = client_context(made["mqtt"].ca)
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            await tls_exchange(sni.addr, anonymous, "mqtt.example.test", b"hello", 7)
        await eventually_async(lambda: sni.listener.stats.handshake_failed == 1, 3)
        assert plain.accepted == 0 and stream.stats.total == 0
        holder = client_context(made["mqtt"].ca, made["clients"])
        got, _ = await tls_exchange(sni.addr, holder, "mqtt.example.test", b"hello", 7)
        assert got == b"M:hello"
        assert sni.listener.stats.handshakes == 1


async def test_a_bad_client_ca_file_refuses_with_an_alert(
    tmp_path: Path, made: dict[str, CertFiles], contexts: TLSContexts
) -> None:
    bad = tmp_path / "no-ca.pem"
    bad.write_text("nothing")
    async with sni_harness() as sni:
        sni.add("mqtt", ("127.0.0.1", 9), ["*"], contexts=contexts, client_ca=str(bad))
        with pytest.raises(ssl.SSLError, match="INTERNAL_ERROR"):
            await tls_exchange(
                sni.addr, client_context(made["mqtt"].ca), "mqtt.example.test", b"", 0
            )
        assert sni.listener.stats.no_certificate == 1


async def test_a_stalled_handshake_is_dropped(
    made: dict[str, CertFiles], contexts: TLSContexts
) -> None:
    async with sni_harness(handshake_timeout=0.3) as sni:
        sni.add("mqtt", ("127.0.0.1", 9), ["mqtt.example.test"], contexts=contexts)
        reader, writer = await connect(sni.addr)
        writer.write(client_hello("mqtt.example.test"))  # and never the rest
        assert await ended(reader)
        writer.close()
        await eventually_async(lambda: sni.listener.stats.handshake_failed == 1, 3)
        assert not sni.listener.handshaking


async def test_closing_the_listener_drops_handshakes_in_progress(
    made: dict[str, CertFiles], contexts: TLSContexts
) -> None:
    async with sni_harness() as sni:
        sni.add("mqtt", ("127.0.0.1", 9), ["mqtt.example.test"], contexts=contexts)
        reader, writer = await connect(sni.addr)
        writer.write(client_hello("mqtt.example.test"))
        await eventually_async(lambda: sni.listener.handshaking, 3)
        await sni.listener.close()
        assert await ended(reader)
        with contextlib.suppress(ConnectionError):
            writer.close()


# --- a socket where every route terminates: OpenSSL reads the hello (``tls.direct``) ---


async def is_direct(sni: SNIHarness) -> bool:
    """Whether a new connection waits for its ClientHello inside TLS (not a ``HelloReader``)."""
    pending = sni.listener.pending
    reader, writer = await connect(sni.addr)
    try:
        await eventually_async(lambda: len(pending) == 1, 3)
        return not isinstance(next(iter(pending)), HelloReader)
    finally:
        writer.close()
        await eventually_async(lambda: not pending, 3)


async def test_routes_by_name_and_the_default_takes_the_rest(
    made: dict[str, CertFiles], contexts: TLSContexts
) -> None:
    async with (
        tcp_backend(echo(b"M:")) as mqtt,
        tcp_backend(echo(b"W:")) as apps,
        sni_harness() as sni,
    ):
        sni.add("mqtt", mqtt.addr, ["mqtt.example.test"], contexts=contexts)
        sni.add("apps", apps.addr, ["*"], contexts=contexts)
        assert sni.listener.direct
        got, cert = await tls_exchange(
            sni.addr, client_context(made["mqtt"].ca), "mqtt.example.test", b"hi", 4
        )
        assert (got, san(cert)) == (b"M:hi", ["mqtt.example.test"])
        got, cert = await tls_exchange(
            sni.addr, client_context(made["wild"].ca), "x.apps.test", b"hi", 4
        )
        assert (got, san(cert)) == (b"W:hi", ["*.apps.test"])
        stats = sni.listener.stats
        assert (stats.accepted, stats.routed, stats.handshakes) == (2, 2, 2)
        assert not sni.listener.pending and not sni.listener.handshaking


async def test_no_route_and_no_name_get_unrecognized_name(
    made: dict[str, CertFiles], contexts: TLSContexts
) -> None:
    async with tcp_backend(echo()) as plain, sni_harness() as sni:
        sni.add("mqtt", plain.addr, ["mqtt.example.test"], contexts=contexts)
        ctx = client_context(made["wild"].ca)
        ctx.check_hostname = False
        for name in ("other.example.test", None):
            with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
                await tls_exchange(sni.addr, ctx, name, b"x", 1)
        await eventually_async(lambda: sni.listener.stats.no_match == 2, 3)
        assert plain.accepted == 0 and sni.listener.stats.handshakes == 0


async def test_a_name_without_a_certificate_gets_unrecognized_name(
    made: dict[str, CertFiles], contexts: TLSContexts
) -> None:
    async with sni_harness() as sni:
        sni.add("bare", ("127.0.0.1", 9), ["bare.test"], contexts=contexts)
        with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
            await tls_exchange(sni.addr, client_context(made["mqtt"].ca), "bare.test", b"", 0)
        await eventually_async(lambda: sni.listener.stats.no_certificate == 1, 3)


async def test_a_client_hello_in_one_byte_segments(
    made: dict[str, CertFiles], contexts: TLSContexts
) -> None:
    async with tcp_backend(echo(b"M:")) as plain, sni_harness() as sni:
        sni.add("mqtt", plain.addr, ["mqtt.example.test"], contexts=contexts)
        client = BIOClient(client_context(made["mqtt"].ca), "mqtt.example.test")
        reader, writer = await connect(sni.addr)
        for byte in client.hello:
            writer.write(bytes([byte]))
            await writer.drain()
        await client.finish(reader, writer)
        assert await client.exchange(reader, writer, b"split", 7) == b"M:split"
        writer.close()
        assert sni.listener.stats.handshakes == 1


@pytest.mark.parametrize(
    ("first", "counter"),
    [
        (b"GET / HTTP/1.1\r\nHost: mqtt.example.test\r\n\r\n", "not_tls"),
        (b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00", "malformed"),  # a ServerHello
        (b"", "empty"),
        (client_hello("mqtt.example.test")[:100], "empty"),  # truncated, then EOF
    ],
)
async def test_direct_bad_first_flights_are_closed_and_counted(
    contexts: TLSContexts, first: bytes, counter: str
) -> None:
    async with tcp_backend(echo()) as plain, sni_harness() as sni:
        sni.add("mqtt", plain.addr, ["*"], contexts=contexts)
        reader, writer = await connect(sni.addr)
        writer.write(first)
        writer.write_eof()
        assert b"\x17" not in await read_all(reader)  # never application data
        writer.close()
        await eventually_async(lambda: getattr(sni.listener.stats, counter) == 1, 3)
        assert plain.accepted == 0 and not sni.listener.pending


async def test_a_renewed_certificate_serves_the_next_handshake(
    tmp_path: Path, made: dict[str, CertFiles], contexts: TLSContexts
) -> None:
    """The listener remembers the route and context it chose for a name: a reload of the
    certificates makes it choose again."""
    renewed = certificates(tmp_path / "renewed", "mqtt.example.test")  # another CA
    async with tcp_backend(echo(b"M:")) as plain, sni_harness() as sni:
        sni.add("mqtt", plain.addr, ["mqtt.example.test"], contexts=contexts)
        assert await is_direct(sni)
        got, _ = await tls_exchange(sni.addr, client_context(made["mqtt"].ca), NAME, b"a", 3)
        assert got == b"M:a"
        install(tmp_path / "certs", "mqtt", renewed)
        assert contexts.refresh()
        got, cert = await tls_exchange(sni.addr, client_context(renewed.ca), NAME, b"b", 3)
        assert (got, san(cert)) == (b"M:b", [NAME])
        assert sni.listener.stats.routed == 2  # remembered or not, each is counted


async def test_direct_silent_client_times_out(contexts: TLSContexts) -> None:
    async with sni_harness(hello_timeout=0.2) as sni:
        sni.add("mqtt", ("127.0.0.1", 9), ["*"], contexts=contexts)
        reader, writer = await connect(sni.addr)
        writer.write(b"\x16\x03")
        assert await ended(reader)
        writer.close()
        await eventually_async(lambda: sni.listener.stats.timed_out == 1, 3)
        assert sni.listener.stats.empty == 0 and not sni.listener.pending


async def test_direct_pending_hellos_are_capped(contexts: TLSContexts) -> None:
    async with sni_harness(max_pending=2, max_pending_per_source=1) as sni:
        sni.add("mqtt", ("127.0.0.1", 9), ["*"], contexts=contexts)
        await assert_pending_caps(sni)


async def test_a_passthrough_route_or_a_client_ca_reads_the_hello_first(
    made: dict[str, CertFiles], contexts: TLSContexts
) -> None:
    async with tcp_backend(echo(b"M:")) as plain, sni_harness() as sni:
        sni.add("mqtt", plain.addr, ["mqtt.example.test"], contexts=contexts)
        assert await is_direct(sni)
        sni.add("pass", ("127.0.0.1", 9), ["pass.example.test"])
        assert not await is_direct(sni)
        got, _ = await tls_exchange(
            sni.addr, client_context(made["mqtt"].ca), "mqtt.example.test", b"hi", 4
        )
        assert got == b"M:hi"  # terminated all the same, after the listener read the hello
        sni.routes.pop()
        sni.add("ca", ("127.0.0.1", 9), ["ca.example.test"], contexts=contexts, client_ca="x")
        assert not await is_direct(sni)
