"""SNI routes through the daemon's own stages, in process: a routes file parsed with the
operator's settings, the reconciler's decision, the stream manager's shared TLS sockets
(one listener per socket, opened with the first route and closed after the last), the read
model and the metrics; TLS upstreams and clients on loopback."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from godoxy_streams.agent.certs import CertFiles
from godoxy_streams.app.context import settings_context
from godoxy_streams.labels import parse_static_routes
from godoxy_streams.observe.metrics import Metrics
from godoxy_streams.reconcile.reconciler import Reconciler
from godoxy_streams.reconcile.snapshot import build_snapshot
from godoxy_streams.runtime.manager import StreamManager
from godoxy_streams.settings import Settings
from godoxy_streams.snapshot import RouteView, Snapshot

from ..helpers import free_port, tcp_connectable
from ..tls_kit import certificate_set, client_context, install, server_context
from .kit import LOCAL, Backend, echo, tcp_backend
from .sni_kit import no_verify, san, tls_exchange


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CertFiles]:
    return certificate_set(
        tmp_path_factory.mktemp("routes"), a="a.example.test", b="b.example.test", m="mqtt.test"
    )


class Daemon:
    """The reconciler and manager of a daemon without Docker, fed a routes file."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.manager = StreamManager(settings)
        self.reconciler = Reconciler(self.manager, settings_context(settings))

    async def routes(self, **routes: dict[str, Any]) -> Snapshot:
        """Serve these routes (the routes file's ``routes:``) and return the snapshot."""
        document = yaml.safe_load(yaml.safe_dump({"routes": routes}))
        text = yaml.load(yaml.safe_dump(document), Loader=yaml.BaseLoader)
        result = parse_static_routes(text, self.reconciler.ctx)
        assert not result.errors, [str(e) for e in result.errors]
        self.reconciler.set_static(result)
        await self.reconciler.reconcile()
        return self.snapshot()

    def snapshot(self) -> Snapshot:
        return build_snapshot(self.reconciler, [], True)

    def view(self, alias: str) -> RouteView:
        (view,) = [r for r in self.snapshot().routes if r.spec.alias == alias]
        return view


@contextlib.asynccontextmanager
async def daemon(tmp_path: Path, **settings: Any) -> AsyncIterator[Daemon]:
    made = Daemon(Settings.load(docker=("unix:///nowhere.sock",), **settings))
    try:
        yield made
    finally:
        await made.manager.close_all(kill=True)


@contextlib.asynccontextmanager
async def tls_upstreams(certs: dict[str, CertFiles], *keys: str) -> AsyncIterator[list[Backend]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                tcp_backend(echo(f"{key}:".encode()), tls=server_context(certs[key]))
            )
            for key in keys
        ]


def route(backend: Backend, port: int, **fields: Any) -> dict[str, Any]:
    return {"scheme": "tcp", "port": f"{port}:{backend.addr[1]}", **fields}


async def test_two_names_and_a_default_share_one_socket(
    tmp_path: Path, certs: dict[str, CertFiles]
) -> None:
    port = free_port()
    async with daemon(tmp_path) as d, tls_upstreams(certs, "a", "b", "m") as (a, b, m):
        snap = await d.routes(
            a=route(a, port, sni="a.example.test"),
            b=route(b, port, sni=["b.example.test"]),
            fallback=route(m, port, sni="*"),
        )
        assert [r.state for r in snap.routes] == ["running"] * 3
        for key, name in (("a", "a.example.test"), ("b", "b.example.test")):
            got, cert = await tls_exchange(
                (LOCAL, port), client_context(certs[key].ca), name, b"hi", 4
            )
            assert (got, san(cert)) == (f"{key}:hi".encode(), [name])
        got, _ = await tls_exchange((LOCAL, port), no_verify(), "other.test", b"hi", 4)
        assert got == b"m:hi"
        row = d.view("a").as_json()
        assert (row["sni"], row["shared_socket"]) == (["a.example.test"], f"tcp/0.0.0.0:{port}")
        (shared,) = d.snapshot().sni_sockets
        assert shared.socket == f"tcp/0.0.0.0:{port}" and shared.routes == 3
        assert dict(shared.outcomes)["routed"] == 3 and shared.accepted == 3
        text = Metrics(d.snapshot).render().decode()
        assert (
            f'godoxy_streams_sni_outcomes_total{{outcome="routed",socket="tcp/0.0.0.0:{port}"}} 3.0'
            in text
        )

        await d.routes(a=route(a, port, sni="a.example.test"))  # b and the default leave
        assert len(d.manager.sni.sockets) == 1 and len(d.snapshot().routes) == 1
        await d.routes()  # the last one leaves: the socket closes
        assert not d.manager.sni.sockets and not tcp_connectable(LOCAL, port, 0.5)


async def test_an_overlapping_name_is_a_conflict_naming_it(
    tmp_path: Path, certs: dict[str, CertFiles]
) -> None:
    port = free_port()
    async with daemon(tmp_path) as d, tls_upstreams(certs, "a", "b") as (a, b):
        snap = await d.routes(
            first=route(a, port, sni="a.example.test, x.example.test"),
            second=route(b, port, sni="x.example.test"),
            plain=route(b, port),
        )
        states = {r.spec.alias: (r.state, r.error) for r in snap.routes}
        assert states["first"] == ("running", None)
        assert states["second"][0] == "conflict"
        assert str(states["second"][1]).startswith(
            f'server name "x.example.test" on tcp/0.0.0.0:{port} is held by file:first'
        )
        assert states["plain"][0] == "conflict"
        assert "TLS server name share a socket only with each other" in str(states["plain"][1])


async def test_a_socket_that_cannot_be_bound_is_an_error_of_each_route(
    tmp_path: Path, certs: dict[str, CertFiles]
) -> None:
    with socket.socket() as taken:
        taken.bind((LOCAL, 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with daemon(tmp_path) as d, tls_upstreams(certs, "a") as (a,):
            snap = await d.routes(
                a=route(a, port, sni="a.test", bind=LOCAL),
                b=route(a, port, sni="b.test", bind=LOCAL),
            )
            assert [r.state for r in snap.routes] == ["error", "error"]
            assert all(f"cannot listen on tcp {LOCAL}:{port}" in str(r.error) for r in snap.routes)
            assert not d.manager.sni.sockets


async def test_termination_waits_for_a_certificate(
    tmp_path: Path, certs: dict[str, CertFiles]
) -> None:
    port, folder = free_port(), tmp_path / "certs"
    folder.mkdir()
    async with tcp_backend(echo(b"M:")) as plain:
        mqtt = route(plain, port, sni="mqtt.test", tls_termination="true")
        async with daemon(tmp_path) as d:  # no certificates_dir
            snap = await d.routes(mqtt=mqtt)
            assert (
                snap.routes[0].error == "tls_termination needs certificates: set certificates_dir"
            )
        async with daemon(tmp_path, certificates_dir=folder) as d:
            snap = await d.routes(mqtt=mqtt)
            (view,) = snap.routes
            assert view.state == "error"
            assert f'no certificate for "mqtt.test" in {folder}' in str(view.error)
            install(folder, "mqtt", certs["m"])
            assert d.manager.sni.refresh_certificates()
            await d.reconciler.reconcile()  # a failed route is tried again at every pass
            assert d.view("mqtt").state == "running"
            got, cert = await tls_exchange(
                (LOCAL, port), client_context(certs["m"].ca), "mqtt.test", b"ping", 6
            )
            assert (got, san(cert)) == (b"M:ping", ["mqtt.test"])


async def test_godoxy_shared_port_routes_by_alias(
    tmp_path: Path, certs: dict[str, CertFiles]
) -> None:
    port = free_port()
    async with daemon(tmp_path, tls_port=port) as d, tls_upstreams(certs, "a") as (a,):
        snap = await d.routes(a=route(a, port))  # GoDoxy: alias "a" is a.* on the TLS port
        assert snap.routes[0].spec.sni == ("a.*",)
        got, cert = await tls_exchange(
            (LOCAL, port), client_context(certs["a"].ca), "a.example.test", b"yo", 4
        )
        assert (got, san(cert)) == (b"a:yo", ["a.example.test"])
