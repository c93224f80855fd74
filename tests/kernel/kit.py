"""The network-namespace test kit: a client namespace wired to the host by a veth pair, with
addresses from 198.18.0.0/15 (the benchmarking range), and a synchronous handle on the
kernel fast path for tests.

``ClientNamespace`` creates ``gdsk-<pid>-<hex>`` with the host side ``198.18.N.1/24`` and the
client side ``198.18.N.2`` and ``.3`` (two sources, for ACL tests), a default route via the
host, and runs client code inside it without a subprocess: ``ns.call(fn, *args)`` runs ``fn``
on a worker thread that entered the namespace (``setns``), so every socket ``fn`` opens lives
there (``ns.tcp_exchange``, ``ns.udp_exchange``, ``ns.connect``). ``close()`` deletes the
namespace, which takes the veth pair with it; ``sweep()`` removes namespaces whose creating
process is gone. Only root may do any of this.

``KernelHarness`` drives a ``KernelPath`` from synchronous tests on a private event loop.
"""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import ipaddress
import os
import secrets
import socket
import subprocess
from collections.abc import Callable, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from godoxy_streams.runtime.kernel.conntrack import Flow
from godoxy_streams.runtime.kernel.path import KernelPath
from godoxy_streams.runtime.kernel.routes import KernelTable, Proto, RouteCounters

from ..helpers import tcp_exchange, udp_exchange

T = TypeVar("T")

PREFIX = "gdsk-"
NETNS_DIR = Path("/var/run/netns")
CLONE_NEWNET = 0x40000000
BENCH_RANGE = ipaddress.IPv4Network("198.18.0.0/15")
LOCK_FILE = Path("/run/lock/godoxy-streams-kernel-tests.lock")
"""One run of the kernel tests at a time on a host: they own the table inet godoxy_streams."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=10)


def _setns(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns({path}): {os.strerror(errno)}")
    finally:
        os.close(fd)


def _used_subnets() -> set[int]:
    """Third octets of 198.18.N.0/24 subnets already on this host's interfaces."""
    used = set()
    for word in ip("-4", "-o", "addr", "show").stdout.split():
        if word.startswith("198.18.") or word.startswith("198.19."):
            used.add(int(word.split(".")[2]))
    return used


class ClientNamespace:
    """A client network namespace on a veth pair to the host (see the module doc)."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.name = f"{PREFIX}{os.getpid()}-{tag}"
        self.host_if, self.peer_if = f"gk{tag}h", f"gk{tag}c"
        free = sorted(set(range(16, 250)) - _used_subnets())
        if not free:
            raise RuntimeError("no free 198.18.N.0/24 subnet for a test namespace")
        octet = free[secrets.randbelow(len(free))]
        self.host_address = f"198.18.{octet}.1"
        self.addresses = (f"198.18.{octet}.2", f"198.18.{octet}.3")
        self._pool: ThreadPoolExecutor | None = None
        try:
            self._create()
        except BaseException:
            self.close()
            raise

    @property
    def address(self) -> str:
        return self.addresses[0]

    def _create(self) -> None:
        ip("netns", "add", self.name)
        ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.peer_if)
        ip("link", "set", self.peer_if, "netns", self.name)
        ip("addr", "add", f"{self.host_address}/24", "dev", self.host_if)
        ip("link", "set", self.host_if, "up")
        inside = ("-n", self.name)
        for address in self.addresses:
            ip(*inside, "addr", "add", f"{address}/24", "dev", self.peer_if)
        ip(*inside, "link", "set", self.peer_if, "up")
        ip(*inside, "link", "set", "lo", "up")
        ip(*inside, "route", "add", "default", "via", self.host_address)
        self._pool = ThreadPoolExecutor(
            max_workers=1, initializer=_setns, initargs=(NETNS_DIR / self.name,)
        )

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` run inside the namespace; its result or its exception."""
        assert self._pool is not None, "namespace closed"
        return self._pool.submit(fn, *args, **kwargs).result()

    def run(
        self, argv: Sequence[str], stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """A program run inside the namespace (``ip netns exec``)."""
        return subprocess.run(
            ["ip", "netns", "exec", self.name, *argv],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def connect(self, host: str, port: int, source: str | None = None) -> socket.socket:
        """A TCP connection opened from the namespace (from ``source`` when given)."""
        src = (source, 0) if source else None
        return self.call(socket.create_connection, (host, port), 5.0, src)

    def udp_socket(self, source: str | None = None) -> socket.socket:
        def make() -> socket.socket:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((source or "0.0.0.0", 0))
            return sock

        return self.call(make)

    def tcp_exchange(self, host: str, port: int, payload: bytes, timeout: float = 5.0) -> bytes:
        return self.call(tcp_exchange, host, port, payload, timeout)

    def udp_exchange(self, host: str, port: int, payload: bytes, timeout: float = 1.0) -> bytes:
        return self.call(udp_exchange, host, port, payload, timeout)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        ip("netns", "del", self.name, check=False)  # the veth pair goes with it
        ip("link", "del", self.host_if, check=False)  # in case the peer never moved

    def __enter__(self) -> ClientNamespace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sweep() -> list[str]:
    """Delete kit namespaces whose creating process is gone; their names."""
    removed = []
    for line in ip("netns", "list").stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        pid = name.removeprefix(PREFIX).split("-")[0]
        if not name.startswith(PREFIX) or not pid.isdigit():
            continue
        if not Path(f"/proc/{pid}").exists():
            ip("netns", "del", name, check=False)
            removed.append(name)
    return removed


@contextmanager
def exclusive() -> Iterator[None]:
    """Hold the host-wide lock of the kernel tests (another run waits for it)."""
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK_FILE, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class KernelHarness:
    """A KernelPath driven synchronously on a private event loop."""

    def __init__(self, path: KernelPath | None = None) -> None:
        self.path = path or KernelPath()
        self._runner = asyncio.Runner()

    def _do(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(coro)

    def start(self) -> list[str]:
        return self._do(self.path.start())

    def apply(self, table: KernelTable) -> dict[int, str]:
        return self._do(self.path.apply(table))

    def counters(self) -> dict[int, RouteCounters]:
        return self._do(self.path.counters())

    def flows(self) -> list[Flow]:
        return self._do(self.path.flows())

    def active(self) -> dict[int, int]:
        return self._do(self.path.active())

    def kill(
        self, route_id: int, member: tuple[str, int] | None = None, proto: Proto = "tcp"
    ) -> int:
        return self._do(self.path.kill(route_id, member, proto))

    def stop(self, *, kill: bool = True) -> None:
        self._do(self.path.stop(kill=kill))

    def close(self) -> None:
        self._runner.close()


def nft_tables() -> list[str]:
    """``nft list tables`` lines (``table inet godoxy_streams`` ...)."""
    done = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, timeout=10)
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def docker_user_rules() -> dict[str, str]:
    """``-S DOCKER-USER`` of each iptables flavour that has the chain."""
    rules = {}
    for tool in ("iptables-nft", "iptables-legacy"):
        done = subprocess.run(
            [tool, "-w", "5", "-S", "DOCKER-USER"], capture_output=True, text=True, timeout=10
        )
        if done.returncode == 0:
            rules[tool] = done.stdout
    return rules
