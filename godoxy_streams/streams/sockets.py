"""The socket edge shared by the TCP and UDP data planes: binding a listen socket (with
``OSError`` translated into the ``ListenError`` tree), resolving a bind address, naming why a
dial failed, and formatting addresses. Nothing here runs per packet."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
from typing import Any, Literal

from godoxy_streams.errors import BindNotAllowed, ListenError, PortInUse

Address = tuple[str, int]
Proto = Literal["tcp", "udp"]
BACKLOG = max(socket.SOMAXCONN, 4096)  # the kernel caps it at net.core.somaxconn


def sock_addr(raw: Any) -> Address:
    """``(host, port)`` of a socket address from ``get_extra_info``; ``("", 0)`` if none."""
    if isinstance(raw, tuple) and len(raw) >= 2:
        return (str(raw[0]), int(raw[1]))
    return ("", 0)


def client_address(addr: tuple[object, ...]) -> Address:
    """``(host, port)`` of a peer, an IPv4-mapped IPv6 host (dual-stack socket) unmapped."""
    host = str(addr[0])
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return (host, int(addr[1]))  # type: ignore[call-overload]


def where(addr: Address | tuple[str, int, int, int]) -> str:
    """``host:port``, with brackets around an IPv6 host."""
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def literal_family(host: str) -> socket.AddressFamily | None:
    """The family of an IP literal, or None for a name that needs resolving."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return socket.AF_INET6 if ip.version == 6 else socket.AF_INET


def is_wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::")


def dial_reason(exc: BaseException) -> str:
    """A short, stable name for why an upstream dial failed (a ``dial_errors`` key)."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, socket.gaierror):
        return "resolve"
    if isinstance(exc, OSError) and exc.errno is not None:
        if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EHOSTDOWN, errno.ENETDOWN):
            return "unreachable"
        if exc.errno == errno.ETIMEDOUT:
            return "timeout"
        if exc.errno == errno.ECONNRESET:
            return "reset"
        return errno.errorcode.get(exc.errno, "oserror").lower()
    return type(exc).__name__.lower()


def translate_bind_error(exc: OSError, proto: Proto, addr: Address) -> ListenError:
    """The ``ListenError`` for a failed bind or listen."""
    what = f"{proto} {where(addr)}"
    if exc.errno == errno.EADDRINUSE:
        return PortInUse(f"{what}: address already in use")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return BindNotAllowed(f"{what}: permission denied")
    return ListenError(f"{what}: {exc.strerror or exc}")


def listen_socket(
    proto: Proto, host: str, port: int, family: socket.AddressFamily
) -> socket.socket:
    """A bound, non-blocking socket (listening, for TCP). Never SO_REUSEPORT.

    ``::`` is bound dual-stack (it overlaps IPv4 too, as ``model.binds_overlap`` assumes);
    any other IPv6 address is v6-only.
    """
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    try:
        sock = socket.socket(family, kind)
    except OSError as exc:
        raise translate_bind_error(exc, proto, (host, port)) from exc
    try:
        if proto == "tcp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if host == "::" else 1)
        sock.bind((host, port))
        if proto == "tcp":
            sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise translate_bind_error(exc, proto, (host, port)) from exc
    return sock


async def resolve_bind(proto: Proto, host: str, port: int) -> tuple[str, int, socket.AddressFamily]:
    """The bind host and family; ``""`` is ``0.0.0.0``; a name is resolved (first answer)."""
    if host == "":
        return "0.0.0.0", port, socket.AF_INET
    family = literal_family(host)
    if family is not None:
        return host, port, family
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=kind, flags=socket.AI_PASSIVE
        )
    except OSError as exc:
        raise ListenError(f"{proto} {where((host, port))}: cannot resolve: {exc}") from exc
    fam, _, _, _, sockaddr = infos[0]
    return str(sockaddr[0]), port, socket.AddressFamily(fam)
