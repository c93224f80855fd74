"""TLS termination on the SNI listener through real loopback sockets: certificates from the
operator's folder picked by name, plaintext upstreams, client certificates required per
route (refused without one), names without a certificate, and a slow handshake."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path

import pytest

from godoxy_streams.agent.certs import CertFiles
from godoxy_streams.runtime.certificates import CertificateDirectory, TLSContexts
from godoxy_streams.streams import ConnRecord

from ..helpers import eventually_async
from ..tls_kit import certificate_set, client_context, client_hello, install
from .kit import connect, echo, ended, tcp_backend
from .sni_kit import san, sni_harness, tls_exchange


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
