"""Generic test helpers: polling with a deadline, ports, tiny TCP/UDP clients, and the
REQUIRE_DOCKER skip-or-fail rule.

Every wait has a deadline; no helper sleeps blindly.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import random
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, NoReturn, TypeVar, overload

import pytest

T = TypeVar("T")

DEFAULT_TIMEOUT = 10.0
DEFAULT_INTERVAL = 0.05


def docker_required() -> bool:
    """True when the environment demands a Docker engine (REQUIRE_DOCKER=1/true/yes)."""
    return os.environ.get("REQUIRE_DOCKER", "").strip().lower() in {"1", "true", "yes"}


def docker_unavailable(reason: str) -> NoReturn:
    """Skip the current test for `reason`, or fail it when REQUIRE_DOCKER=1.

    Also for things the Docker tests cannot do without (e.g. building the test image).
    """
    if docker_required():
        pytest.fail(f"REQUIRE_DOCKER=1 but {reason}", pytrace=False)
    pytest.skip(f"{reason} (set REQUIRE_DOCKER=1 to make this a failure)")


def _timeout_error(what: str, timeout: float, last: object, exc: BaseException | None) -> str:
    detail = f"last error: {exc!r}" if exc is not None else f"last value: {last!r}"
    return f"{what} not true within {timeout:g}s ({detail})"


def eventually(
    predicate: Callable[[], T],
    timeout: float = DEFAULT_TIMEOUT,
    *,
    interval: float = DEFAULT_INTERVAL,
    what: str | None = None,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
) -> T:
    """Call `predicate` until it returns a truthy value, and return that value.

    Exceptions of type `retry_on` count as "not yet". After `timeout` seconds an
    AssertionError names the last value or error (chained to it).
    """
    deadline = time.monotonic() + timeout
    last: object = None
    exc: BaseException | None = None
    while True:
        try:
            value = predicate()
        except retry_on as e:
            exc = e
        else:
            if value:
                return value
            last, exc = value, None
        if time.monotonic() >= deadline:
            name = what or str(getattr(predicate, "__name__", "condition"))
            raise AssertionError(_timeout_error(name, timeout, last, exc)) from exc
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


@overload
async def eventually_async(
    predicate: Callable[[], Awaitable[T]],
    timeout: float = ...,
    *,
    interval: float = ...,
    what: str | None = ...,
    retry_on: tuple[type[BaseException], ...] = ...,
) -> T: ...


@overload
async def eventually_async(
    predicate: Callable[[], T],
    timeout: float = ...,
    *,
    interval: float = ...,
    what: str | None = ...,
    retry_on: tuple[type[BaseException], ...] = ...,
) -> T: ...


async def eventually_async(
    predicate: Callable[[], Any],
    timeout: float = DEFAULT_TIMEOUT,
    *,
    interval: float = DEFAULT_INTERVAL,
    what: str | None = None,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
) -> Any:
    """Async `eventually`: `predicate` may be a plain or an async callable.

    Each call of an async predicate is itself bounded by the remaining time.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: object = None
    exc: BaseException | None = None
    while True:
        try:
            result = predicate()
            value = result
            if inspect.isawaitable(result):
                remaining = max(0.001, deadline - loop.time())
                value = await asyncio.wait_for(result, remaining)
        except TimeoutError as e:
            exc = e
        except retry_on as e:
            exc = e
        else:
            if value:
                return value
            last, exc = value, None
        if loop.time() >= deadline:
            name = what or str(getattr(predicate, "__name__", "condition"))
            raise AssertionError(_timeout_error(name, timeout, last, exc)) from exc
        await asyncio.sleep(min(interval, max(0.0, deadline - loop.time())))


def tcp_connectable(host: str, port: int, timeout: float = 1.0) -> bool:
    """True if a TCP connection to (host, port) succeeds now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Wait until a TCP connect to (host, port) succeeds; AssertionError after `timeout`."""
    eventually(
        lambda: tcp_connectable(host, port, timeout=min(1.0, timeout)),
        timeout,
        what=f"TCP connect to {host}:{port}",
    )


async def wait_for_port_async(host: str, port: int, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Async `wait_for_port` (does not block the event loop)."""

    async def connectable() -> bool:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            return False
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
        return True

    await eventually_async(connectable, timeout, what=f"TCP connect to {host}:{port}")


QUIET_PORTS = (20_000, 32_000)  # below Linux's ephemeral range (32768-60999 by default)
RECENT_PORTS_KEPT = 4_000  # a port is not handed out again until this many others were
_RECENT_PORTS: dict[int, None] = {}  # handed out, oldest first


def free_port(proto: Literal["tcp", "udp"] = "tcp", host: str = "127.0.0.1") -> int:
    """A port that was free on `host` for `proto` a moment ago, taken below the kernel's
    ephemeral range: no outgoing connection (a test's own clients under load, or anything
    else on the machine) can take it before the caller binds it.

    Distinct from the last ``RECENT_PORTS_KEPT`` ports it gave, so a caller that takes
    several before binding any gets different ones. Still racy against another process
    binding the same port on purpose.
    """
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(200):
        port = random.randrange(*QUIET_PORTS)
        if port in _RECENT_PORTS:  # handed out already: perhaps not bound yet
            continue
        with socket.socket(family, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _RECENT_PORTS[port] = None
        if len(_RECENT_PORTS) > RECENT_PORTS_KEPT:
            del _RECENT_PORTS[next(iter(_RECENT_PORTS))]
        return port
    raise RuntimeError(f"no free {proto} port on {host} in {QUIET_PORTS}")


def tcp_exchange(
    host: str, port: int, payload: bytes, timeout: float = 5.0, *, half_close: bool = True
) -> bytes:
    """Send `payload`, half-close, and return everything received until the peer closes.

    Sending runs in a thread so large payloads cannot deadlock against a full receive
    buffer. With half_close=False, reads until len(payload) bytes arrived instead.
    """
    received = bytearray()
    with socket.create_connection((host, port), timeout=timeout) as s:
        send_error: list[BaseException] = []

        def send() -> None:
            try:
                s.sendall(payload)
                if half_close:
                    s.shutdown(socket.SHUT_WR)
            except OSError as e:
                send_error.append(e)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        deadline = time.monotonic() + timeout
        while half_close or len(received) < len(payload):
            s.settimeout(max(0.001, deadline - time.monotonic()))
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            received += chunk
        sender.join(max(0.001, deadline - time.monotonic()))
        if send_error:
            raise send_error[0]
    return bytes(received)


def exchange_or_reset(
    port: int, payload: bytes, *, source: str = "127.0.0.1", host: str = "127.0.0.1"
) -> bytes:
    """Send from `source`; what came back before the close (b"" when the proxy reset us).

    A refused client is reset, and the reset may already show in connect(): a socket with a
    timeout connects without blocking, so the RST can arrive before the handshake is read.
    """
    with socket.socket() as client:
        client.bind((source, 0))
        client.settimeout(5)
        try:
            client.connect((host, port))
            client.sendall(payload)
            return client.recv(100)
        except (ConnectionResetError, BrokenPipeError):
            return b""


def udp_exchange(host: str, port: int, payload: bytes, timeout: float = 1.0) -> bytes:
    """Send one datagram and return the first datagram that comes back (TimeoutError if none)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.connect((host, port))
        s.send(payload)
        return s.recv(65536)
