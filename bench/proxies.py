"""The proxies under test: direct loopback, HAProxy (16 KiB and 256 KiB buffers), nginx, ours,
and variants of ours (a 3-member pool; through the agent's tunnel; opt-in: ACL + PROXY
protocol).

Each proxy is started fresh for every (round, scenario) pair and stopped right after it,
so every measurement starts from a cold, empty process (the RSS figure in particular).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from string import Template

from bench import procs
from bench.netns import HOST_ADDRESS, Topology

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
REPO = HERE.parent
NGINX_STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")
HOST = "127.0.0.1"
START_DEADLINE_S = 20.0
TLS_SCENARIOS = frozenset({"sniconn", "snibulk", "sniterm"})  # for the *-sni proxies only
DAEMON_GRACE_S = 1.0  # ours-agent: SIGTERM to SIGKILL of its daemon (see OursAgent.stop)
KERNEL_TESTS_LOCK = Path("/run/lock/godoxy-streams-kernel-tests.lock")  # tests/kernel/kit.py


@dataclass(frozen=True)
class Ports:
    bulk: int
    echo: int
    udp: int
    more_echo: tuple[int, ...] = ()  # backend only: further echo ports (pool members)
    tls_echo: int = 0  # backend only: the TLS backend's echo and source ports (SNI scenarios)
    tls_source: int = 0


class ProxyStartError(RuntimeError):
    pass


class Proxy:
    """Base: a proxy that forwards listen ports to the backend's ports."""

    name = "?"
    description = "?"
    udp = True  # can it forward UDP?
    measured = True  # has a process of its own whose CPU and RSS we read
    scenarios: frozenset[str] | None = None  # measured only in these (None: in every one)
    baselines: tuple[str, ...] = ()  # a "name/baseline" ratio row for each one that ran
    pool_size = 1  # upstream members behind the echo listener
    tls = False  # measured in the SNI scenarios (TLS_SCENARIOS) only, and in no other
    needs_netns = False  # only measurable from a client namespace (bench/netns.py)

    def __init__(self, listen: Ports, backend: Ports, workdir: Path) -> None:
        self.listen = listen
        self.backend = backend
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.pids: list[int] = []
        self.log = workdir / "logs" / f"{self.name}.log"
        self.bind = HOST  # where the proxy listens and clients connect
        self.backend_host = HOST
        self.topology: Topology | None = None

    def place(self, topology: Topology) -> None:
        """Clients in ``topology``'s namespace, the proxy on its host address, the backend
        in its container."""
        self.topology = topology
        self.bind, self.backend_host = HOST_ADDRESS, topology.backend_address

    # --- to override ---
    def unavailable(self) -> str | None:
        """None when the proxy can run here, else why not."""
        return None

    def argv(self) -> list[str]:
        raise NotImplementedError

    # --- common ---
    def measures(self, scenario: str) -> bool:
        if (scenario in TLS_SCENARIOS) != self.tls:
            return False
        return self.scenarios is None or scenario in self.scenarios

    def target(self) -> Ports:
        return self.listen

    def target_host(self) -> str:
        """The address clients connect to."""
        return self.bind

    def values(self) -> dict[str, object]:
        more = {f"backend_echo_port_{i}": port for i, port in enumerate(self.backend.more_echo, 2)}
        return {
            "bind": self.bind,
            "backend": self.backend_host,
            "bulk_port": self.listen.bulk,
            "echo_port": self.listen.echo,
            "udp_port": self.listen.udp,
            "backend_bulk_port": self.backend.bulk,
            "backend_echo_port": self.backend.echo,
            "backend_udp_port": self.backend.udp,
            "tls_echo_port": self.backend.tls_echo,
            "tls_source_port": self.backend.tls_source,
            **more,
        }

    def render(self, template: str, out_name: str, **extra: object) -> Path:
        text = Template((TEMPLATES / template).read_text()).substitute(self.values(), **extra)
        path = self.workdir / "conf" / out_name
        path.write_text(text)
        return path

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        (self.workdir / "conf").mkdir(parents=True, exist_ok=True)
        argv = self.argv()
        with open(self.log, "a") as f:
            f.write(f"\n=== start: {' '.join(argv)}\n")
        self.proc = procs.spawn(argv, log=self.log, cwd=REPO)
        try:
            ready = procs.wait_until(self._ready, START_DEADLINE_S, interval=0.05)
            if not ready:
                raise ProxyStartError(self._failure(f"not ready after {START_DEADLINE_S:g}s"))
            self.pids = procs.tree_pids(self.proc.pid)
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise ProxyStartError(self._failure(f"exited with {self.proc.returncode}"))
        if not procs.tcp_accepts(self.bind, self.listen.bulk):
            return False
        if not procs.tcp_accepts(self.bind, self.listen.echo):
            return False
        return not self.udp or procs.udp_echoes(self.bind, self.listen.udp)

    def _failure(self, what: str) -> str:
        tail = self._log_tail()
        last = tail.splitlines()[-1] if tail.strip() else ""
        return f"{self.name} {what}: {last} (log: {self.log})\n{tail}"

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is not None:
            procs.stop(self.proc)
            self.proc = None
        self.pids = []


class Direct(Proxy):
    name = "direct"
    description = "no proxy: client to backend over loopback (headroom)"
    measured = False
    _opened = False

    def target(self) -> Ports:
        return self.backend

    def target_host(self) -> str:
        return self.backend_host

    def start(self) -> None:
        if self.topology is not None and not self._opened:
            self.topology.open_direct()  # undone with the topology
            self._opened = True
        self.pids = []

    def stop(self) -> None:
        pass


class HAProxy(Proxy):
    name = "haproxy"
    description = "HAProxy, nbthread 1, default tune.bufsize (16 KiB)"
    udp = False
    bufsize: int | None = None
    template = "haproxy.cfg"

    def unavailable(self) -> str | None:
        return None if shutil.which("haproxy") else "haproxy not installed (make bench-deps)"

    def template_values(self) -> dict[str, object]:
        return {"tune": f"    tune.bufsize {self.bufsize}" if self.bufsize else ""}

    def argv(self) -> list[str]:
        pidfile = self.workdir / "conf" / f"{self.name}.pid"
        cfg = self.render(
            self.template, f"{self.name}.cfg", pidfile=pidfile, **self.template_values()
        )
        return [shutil.which("haproxy") or "haproxy", "-db", "-f", str(cfg)]


class HAProxy256k(HAProxy):
    name = "haproxy-256k"
    description = "HAProxy, nbthread 1, tune.bufsize 262144"
    bufsize = 262144


class Nginx(Proxy):
    name = "nginx"
    description = "nginx stream module, 1 worker (master + worker measured)"
    buffer: str | None = None
    template = "nginx.conf"

    def unavailable(self) -> str | None:
        if not shutil.which("nginx"):
            return "nginx not installed (make bench-deps)"
        if not NGINX_STREAM_MODULE.exists():
            return f"{NGINX_STREAM_MODULE} missing (apt-get install libnginx-mod-stream)"
        return None

    def template_values(self) -> dict[str, object]:
        return {"buffer": f"    proxy_buffer_size {self.buffer};" if self.buffer else ""}

    def argv(self) -> list[str]:
        conf_dir = self.workdir / "conf"
        cfg = self.render(
            self.template,
            f"{self.name}.conf",
            stream_module=NGINX_STREAM_MODULE,
            pidfile=conf_dir / f"{self.name}.pid",
            error_log=self.log,
            **self.template_values(),
        )
        nginx = shutil.which("nginx") or "nginx"
        return [nginx, "-p", str(conf_dir), "-e", str(self.log), "-c", str(cfg)]


class Nginx256k(Nginx):
    """Opt-in: nginx with proxy_buffer_size 256k (default 16k), the peer of haproxy-256k."""

    name = "nginx-256k"
    description = "nginx stream module, 1 worker, proxy_buffer_size 256k (opt-in)"
    buffer = "256k"


def _ours_bin() -> Path:
    return Path(sys.executable).parent / "godoxy-streams"


_OURS_HELP: str | None = None


def _ours_help() -> str:
    """`godoxy-streams run --help`, or '' when that sub-command does not exist (yet)."""
    global _OURS_HELP
    if _OURS_HELP is None:
        exe = _ours_bin()
        text = ""
        if exe.exists():
            try:
                res = subprocess.run(
                    [str(exe), "run", "--help"],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    stdin=subprocess.DEVNULL,
                )
                if res.returncode == 0:
                    text = res.stdout
            except (OSError, subprocess.TimeoutExpired):
                text = ""
        _OURS_HELP = text
    return _OURS_HELP


class Ours(Proxy):
    name = "ours"
    description = "godoxy-streams run --no-docker --routes FILE"
    routes_template = "routes.yml"

    def unavailable(self) -> str | None:
        help_text = _ours_help()
        if not help_text:
            return f"`{_ours_bin()} run --help` failed: the run command does not exist yet"
        missing = [opt for opt in ("--no-docker", "--routes") if opt not in help_text]
        if missing:
            return f"`godoxy-streams run` has no {', '.join(missing)} option yet"
        return None

    def argv(self) -> list[str]:
        routes = self.render(self.routes_template, f"{self.name}-routes.yml")
        argv = [str(_ours_bin()), "run", "--no-docker", "--routes", str(routes)]
        help_text = _ours_help()
        if "--api" in help_text:
            argv += ["--api", "127.0.0.1:0"]  # never collide with a running instance
        if "--log-level" in help_text:
            argv += ["--log-level", "WARNING"]  # measure the data path, not log lines
        return argv


class OursGuarded(Ours):
    """Opt-in: the same daemon and routes, plus `acl: {allow: [127.0.0.0/8]}` on every route
    and `proxy_protocol: v2` on every TCP route (the C backend skips the PROXY header)."""

    name = "ours-guarded"
    description = "ours + ACL on every route + PROXY protocol v2 on TCP routes (opt-in)"
    routes_template = "routes-guarded.yml"


class OursKernel(Ours):
    """The same daemon and routes with ``--fast-path nftables``: the kernel forwards the
    routes (nftables DNAT), so clients must arrive from another host: a client namespace
    (bench/netns.py). The daemon is measured (its CPU is what the fast path leaves to it).
    Ready once the status API says every route is on the kernel path and an echo from the
    namespace comes back. Holds the kernel tests' lock while it runs: both own the table
    ``inet godoxy_streams``."""

    name = "ours-kernel"
    description = "ours with --fast-path nftables: routes forwarded by nftables DNAT (netns)"
    scenarios = frozenset({"bulk1", "bulk8", "rtt", "connrate", "udp"})
    baselines = ("direct", "ours")
    needs_netns = True

    def __init__(self, listen: Ports, backend: Ports, workdir: Path) -> None:
        super().__init__(listen, backend, workdir)
        self.api_port = procs.free_ports(1)[0]
        self._lock: int | None = None

    def unavailable(self) -> str | None:
        if os.geteuid() != 0:
            return "the kernel fast path needs root"
        missing = [tool for tool in ("nft", "conntrack") if shutil.which(tool) is None]
        if missing:
            return f"{' and '.join(missing)} not installed (apt-get install nftables conntrack)"
        if "--fast-path" not in _ours_help():
            return "`godoxy-streams run` has no --fast-path option"
        return super().unavailable()

    def argv(self) -> list[str]:
        argv = super().argv()
        argv = [a if a != "127.0.0.1:0" else f"127.0.0.1:{self.api_port}" for a in argv]
        return [*argv, "--fast-path", "nftables"]

    def start(self) -> None:
        self._lock = procs.take_lock(KERNEL_TESTS_LOCK, START_DEADLINE_S * 30)
        if self._lock is None:
            raise ProxyStartError(f"{KERNEL_TESTS_LOCK} stayed held (kernel tests running)")
        try:
            super().start()
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        assert self.proc is not None and self.topology is not None
        if self.proc.poll() is not None:
            raise ProxyStartError(self._failure(f"exited with {self.proc.returncode}"))
        try:
            url = f"http://127.0.0.1:{self.api_port}/api/routes"
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (loopback)
                routes = json.load(response)["routes"]
        except (OSError, ValueError, KeyError):
            return False
        if len(routes) < 3 or any(r.get("path") != "kernel" for r in routes):
            return False
        address = (self.bind, self.listen.echo)
        probe = (
            f"import socket; s = socket.create_connection({address!r}, 2); s.sendall(b'r'); "
            "assert s.recv(1) == b'r'"
        )
        done = subprocess.run(
            [*self.topology.prefix(), sys.executable, "-c", probe],
            capture_output=True,
            timeout=10,
            check=False,
        )
        return done.returncode == 0

    def stop(self) -> None:
        try:
            super().stop()  # SIGTERM: the daemon removes its table and rule
        finally:
            if self._lock is not None:
                os.close(self._lock)
                self._lock = None


class OursPool3(Ours):
    """The same daemon with the echo listener as one pool of three members (three echo ports
    of the one C backend), round robin per new connection: what choosing a member costs per
    new connection. Measured in `connrate` only, next to `ours` (the single-upstream route)."""

    name = "ours-pool3"
    description = "ours with the echo route as a 3-member round-robin pool (connrate only)"
    routes_template = "routes-pool3.yml"
    scenarios = frozenset({"connrate"})
    baselines = ("ours",)
    pool_size = 3

    def unavailable(self) -> str | None:
        if len(self.backend.more_echo) < self.pool_size - 1:
            return f"the backend serves {1 + len(self.backend.more_echo)} echo ports, not 3"
        return super().unavailable()


class OursAgent(Ours):
    """The same daemon and TCP routes as ``ours``, but its routes dial through an agent's
    tunnel (mutual TLS, ALPN ``godoxy-streams-stream/1``, the 78-byte header, then raw
    bytes) to a second process, the agent, which dials the backend: two processes of the
    package's real code (``bench/agentpair.py``), both measured (CPU and RSS are summed).

    UDP sessions are flows on the daemon's QUIC connection to the agent. The agent's
    allow-list is fixed to the backend's ports (there is no container to read labels from).
    It listens, TCP and UDP, on a port of its own."""

    name = "ours-agent"
    description = "ours with its routes through the agent (TCP: mutual TLS; UDP: QUIC; 2 procs)"
    routes_template = "routes-agent.yml"
    # Not idle: its 5,000 simultaneous connects are 5,000 TLS handshakes at once, and many
    # outlast the daemon's 5 s dial timeout, so the figure would be of a partial set.
    scenarios = frozenset({"bulk1", "bulk8", "rtt", "connrate", "udp"})
    baselines = ("ours", "direct")

    def __init__(self, listen: Ports, backend: Ports, workdir: Path) -> None:
        super().__init__(listen, backend, workdir)
        self.agent_port = procs.free_ports(1)[0]
        self.certs = workdir / "conf" / "agent-certs"
        self.agent: subprocess.Popen[bytes] | None = None
        self._certs_made = False

    def unavailable(self) -> str | None:
        try:
            from godoxy_streams.agent.client import tunnel  # noqa: F401
            from godoxy_streams.agent.server import server  # noqa: F401
        except ImportError as exc:
            return f"the agent is not importable: {exc}"
        return super().unavailable()

    def _make_certs(self) -> None:
        """A fresh CA, agent and daemon certificate once per bench run."""
        if self._certs_made:
            return
        from godoxy_streams.agent.certs import create_certs

        shutil.rmtree(self.certs, ignore_errors=True)
        create_certs(self.certs, [HOST])
        self._certs_made = True

    def _helper(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "bench.agentpair", *args, "--certs", str(self.certs)]

    def agent_argv(self) -> list[str]:
        allow = [
            f"{self.backend_host}:{port}"
            for port in (self.backend.bulk, self.backend.echo, self.backend.udp)
        ]
        return self._helper(
            "agent",
            "--listen",
            f"{HOST}:{self.agent_port}",
            *[arg for addr in allow for arg in ("--allow", addr)],
        )

    def argv(self) -> list[str]:
        run_args = super().argv()[2:]  # ours' `run ...` arguments, routes file included
        return [*self._helper("daemon", "--agent", f"{HOST}:{self.agent_port}"), "--", *run_args]

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        (self.workdir / "conf").mkdir(parents=True, exist_ok=True)
        self._make_certs()
        argv = self.agent_argv()
        with open(self.log, "a") as f:
            f.write(f"\n=== start agent: {' '.join(argv)}\n")
        self.agent = procs.spawn(argv, log=self.log, cwd=REPO)
        try:
            if not procs.wait_until(self._agent_ready, START_DEADLINE_S, interval=0.05):
                raise ProxyStartError(self._failure(f"agent not ready after {START_DEADLINE_S:g}s"))
            super().start()  # the daemon; ready once an echo crosses the tunnel
            self.pids = procs.tree_pids(self.agent.pid) + self.pids
        except BaseException:
            self.stop()
            raise

    def _agent_ready(self) -> bool:
        assert self.agent is not None
        if self.agent.poll() is not None:
            raise ProxyStartError(self._failure(f"agent exited with {self.agent.returncode}"))
        return procs.tcp_accepts(HOST, self.agent_port)

    def _ready(self) -> bool:
        assert self.agent is not None
        if self.agent.poll() is not None:
            raise ProxyStartError(self._failure(f"agent exited with {self.agent.returncode}"))
        return super()._ready() and _echoes(self.bind, self.listen.echo)

    def stop(self) -> None:
        # The daemon first, so its tunnels and flows end before the agent does. The
        # measurement is over: give it DAEMON_GRACE_S to drain, then SIGKILL.
        if self.proc is not None:
            procs.stop(self.proc, grace=DAEMON_GRACE_S)
            self.proc = None
        super().stop()
        if self.agent is not None:
            procs.stop(self.agent)
            self.agent = None


def _echoes(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a few bytes sent to an echo route come back (the whole path is up)."""
    probe = b"ready?"
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(probe)
            got = b""
            while len(got) < len(probe):
                chunk = s.recv(64)
                if not chunk:
                    return False
                got += chunk
            return got == probe
    except OSError:
        return False


class PyRef(Proxy):
    """Opt-in (--proxies ...,pyref): a naive asyncio proxy (bench/refproxy.py) with the same
    routes file, used to check the "ours" code path before `godoxy-streams run` exists, and
    as a floor for what plain asyncio does."""

    name = "pyref"
    description = "bench/refproxy.py: naive asyncio proxy, same routes file (opt-in)"

    def argv(self) -> list[str]:
        routes = self.render("routes.yml", f"{self.name}-routes.yml")
        return [sys.executable, "-m", "bench.refproxy", "--routes", str(routes)]


ALL: dict[str, type[Proxy]] = {
    cls.name: cls
    for cls in (
        Direct,
        HAProxy,
        HAProxy256k,
        Nginx,
        Nginx256k,
        Ours,
        OursPool3,
        OursAgent,
        OursGuarded,
        OursKernel,
        PyRef,
    )
}
DEFAULT = ["direct", "haproxy", "haproxy-256k", "nginx", "ours", "ours-pool3", "ours-agent"]
POOL_PORTS = 2  # echo ports the backend serves besides its own: members 2 and 3 of ours-pool3
