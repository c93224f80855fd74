"""The shared TLS sockets of the runtime: one ``SNIListener`` per listen socket that routes
chosen by TLS server name (``RouteSpec.sni``) share.

The listener is bound with the first SNI route on its socket and closed (``settle``) once
the last has left; each route's ``TCPStream`` is ``prepare``d, not bound, and registered
with the listener (``set_routes``, oldest first), which hands it the connections whose
server name it claims. A route that stops is deregistered at once (new clients no longer
reach it) and its stream drains as any other. A socket that cannot be bound is an error of
each route that wants it; a terminating route without a certificate for its names, or
with no ``certificates_dir`` at all, is an error of that route: none crashes the daemon.

Terminated routes get their certificates from one ``TLSContexts`` over the operator's
``certificates_dir`` (``refresh`` picks up changes: a poll and SIGHUP call it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from loguru import logger

from godoxy_streams.errors import ListenError
from godoxy_streams.model import RouteKey, RouteSpec
from godoxy_streams.runtime.certificates import CertificateDirectory, TLSContexts, uncovered
from godoxy_streams.runtime.views import sni_socket_view
from godoxy_streams.settings import Settings
from godoxy_streams.snapshot import SNISocketView
from godoxy_streams.streams.context import Hook, OnClose
from godoxy_streams.streams.sockets import where
from godoxy_streams.streams.tcp.stream import TCPStream
from godoxy_streams.streams.tls.listener import SNIListener
from godoxy_streams.streams.tls.routing import SNIRoute

Socket = tuple[str, int]  # (bind, port)


def socket_of(spec: RouteSpec) -> Socket:
    return (spec.bind, spec.listen_port or 0)


def claim_order(spec: RouteSpec) -> tuple[bool, float, str, str]:
    """Oldest first, as ``decide.desired`` ranks claimants (static routes first)."""
    return (spec.origin.kind != "file", spec.origin.created, spec.origin.name, spec.alias)


@dataclass
class SharedSocket:
    """One shared socket: its listener and the routes registered with it."""

    listener: SNIListener
    routes: dict[RouteKey, tuple[RouteSpec, SNIRoute]] = field(default_factory=dict)

    def publish(self) -> None:
        """Give the listener the routes, oldest first."""
        ordered = sorted(self.routes.values(), key=lambda item: claim_order(item[0]))
        for conflict in self.listener.set_routes([route for _, route in ordered]):
            logger.bind(listen=str(self.listener.local_addr)).warning(
                f"server name {conflict.pattern} claimed twice on one socket: "
                f"{conflict.owner.stream.name} keeps it over {conflict.other.stream.name}"
            )


class SNISockets:
    """See the module docstring."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        folder = settings.certificates_dir
        self.certificates = CertificateDirectory(folder) if folder is not None else None
        self.contexts = TLSContexts(self.certificates) if self.certificates else None
        if self.certificates is not None:
            self.certificates.reload()
        self.sockets: dict[Socket, SharedSocket] = {}

    def refresh_certificates(self) -> bool:
        """Reload changed certificate files; True when something changed."""
        return self.contexts.refresh() if self.contexts is not None else False

    async def add(
        self,
        spec: RouteSpec,
        stream: TCPStream,
        on_close: OnClose | None,
        pre_dial: Hook | None = None,
    ) -> str | None:
        """Serve ``spec`` on its shared socket through ``stream`` (not bound; ``pre_dial`` its
        hook, e.g. sleep/wake's); None, or the error that keeps it out."""
        problem = self.termination_problem(spec)
        if problem is not None:
            return problem
        shared = self.sockets.get(socket_of(spec))
        if shared is None:
            listener = self.new_listener(spec)
            try:
                await listener.serve()
            except ListenError as exc:
                return f"cannot listen on tcp {where(socket_of(spec))}: {exc}"
            shared = self.sockets[socket_of(spec)] = SharedSocket(listener)
        stream.prepare(pre_dial=pre_dial, on_close=on_close)
        contexts = self.contexts if spec.tls_termination else None
        route = SNIRoute(stream, spec.name_patterns, contexts, spec.tls_client_ca)
        shared.routes[spec.key] = (spec, route)
        shared.publish()
        return None

    def new_listener(self, spec: RouteSpec) -> SNIListener:
        limits = self.settings.limits
        return SNIListener(
            (spec.bind, spec.listen_port or 0),
            name=f"sni {spec.key.socket}",
            hello_timeout=limits.tls_hello_timeout,
            handshake_timeout=limits.tls_handshake_timeout,
        )

    def termination_problem(self, spec: RouteSpec) -> str | None:
        """Why a terminating route cannot start (no certificates for its names), or None."""
        if not spec.tls_termination:
            return None
        if self.certificates is None:
            return "tls_termination needs certificates: set certificates_dir"
        missing = uncovered(self.certificates, spec.name_patterns)
        if not missing:
            return None
        names = ", ".join(f'"{p}"' for p in missing)
        errors = "; ".join(self.certificates.errors)
        return (
            f"tls_termination: no certificate for {names} in {self.certificates.folder} "
            "(the route starts when one is there)" + (f"; {errors}" if errors else "")
        )

    def remove(self, spec: RouteSpec) -> None:
        """New clients no longer reach ``spec``'s stream (its live connections stay)."""
        shared = self.sockets.get(socket_of(spec))
        if shared is not None and shared.routes.pop(spec.key, None) is not None:
            shared.publish()

    async def settle(self, keep: Iterable[Socket] = ()) -> None:
        """Close the listeners that have no route left (except those in ``keep``)."""
        kept = set(keep)
        for place, shared in list(self.sockets.items()):
            if not shared.routes and place not in kept:
                del self.sockets[place]
                await shared.listener.close()

    def views(self) -> list[SNISocketView]:
        """Each shared socket's counters, for the read model."""
        return [
            sni_socket_view(f"tcp/{where(place)}", len(shared.routes), shared.listener)
            for place, shared in sorted(self.sockets.items())
        ]
