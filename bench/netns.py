"""The client-namespace topology of `make bench --netns` (implied by `ours-kernel`): clients
in a network namespace of their own, the proxies on the host, the backend in a container, as
a client on another host reaches a proxy. The kernel fast path (nftables DNAT of traffic that
arrives from other hosts) can only be measured this way, and every proxy of the run is driven
the same way so that the ratios compare like with like.

    namespace gdsb-PID   198.18.0.2/24, 198.18.1.0/24 local (connrate's sources), default
          | veth          route via 198.18.0.1
    host                 198.18.0.1/24 (the proxies bind it), 198.18.1.0/24 via 198.18.0.2
          | bridge gdsb-PID (a Docker network)
    backend container    the static loadgen, its counters file bind-mounted from bench/out/shm

What it changes, and undoes in ``close()`` (in reverse order, each step on its own, also after
an error or Ctrl-C): the namespace (its veth and routes go with it), the container and the
network, ``net.ipv4.tcp_tw_reuse`` set to 1 (the proxies' connections to a non-loopback backend
otherwise run out of ports after ~28,000), and, for ``direct`` only, one accept in Docker's
``DOCKER-USER`` chain from 198.18.0.0/23 to the backend (Docker's FORWARD policy drops
forwarded traffic to a container otherwise), commented ``godoxy-streams-bench``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

HOST_ADDRESS = "198.18.0.1"
CLIENT_ADDRESS = "198.18.0.2"
SOURCES = "198.18.1.0/24"
SOURCE_BASE = "198.18.1.1"
CLIENTS = "198.18.0.0/23"
PREFIX = "gdsb-"
IMAGE_REPO = "godoxy-streams-bench/loadgen"
COMMENT = "godoxy-streams-bench"
TW_REUSE = Path("/proc/sys/net/ipv4/tcp_tw_reuse")
FLAVOURS = ("iptables-nft", "iptables-legacy")


class TopologyError(RuntimeError):
    pass


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if check and done.returncode != 0:
        raise TopologyError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done


def sweep() -> None:
    """Remove bench namespaces whose run is gone (a SIGKILLed harness)."""
    for line in _run("ip", "netns", "list").stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        pid = name.removeprefix(PREFIX)
        if name.startswith(PREFIX) and pid.isdigit() and not Path(f"/proc/{pid}").exists():
            _run("ip", "netns", "del", name, check=False)


def _address_in_use(address: str) -> bool:
    return f" {address}/" in _run("ip", "-4", "-o", "addr", "show").stdout


class Topology:
    """The namespace, the backend container and the firewall and sysctl changes of one run."""

    def __init__(self) -> None:
        self.name = f"{PREFIX}{os.getpid()}"
        self.host_if, self.peer_if = f"gdsb{os.getpid()}h", f"gdsb{os.getpid()}c"
        self.backend_address = ""
        self.backend_pid = 0
        self._undo: list[tuple[str, Callable[[], object]]] = []
        self._container: object | None = None

    # -- set up ----------------------------------------------------------------------------
    def open(self) -> Topology:
        if os.geteuid() != 0:
            raise TopologyError("the client namespace needs root (ip netns, iptables)")
        sweep()
        if _address_in_use(HOST_ADDRESS):
            raise TopologyError(f"{HOST_ADDRESS} is in use: another bench run?")
        try:
            self._namespace()
            self._tw_reuse()
        except BaseException:
            self.close()
            raise
        return self

    def _namespace(self) -> None:
        ns = ("-n", self.name)
        _run("ip", "netns", "add", self.name)
        self._undo.append(("namespace", lambda: _run("ip", "netns", "del", self.name)))
        _run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.peer_if)
        self._undo.append(("veth", lambda: _run("ip", "link", "del", self.host_if, check=False)))
        _run("ip", "link", "set", self.peer_if, "netns", self.name)
        _run("ip", "addr", "add", f"{HOST_ADDRESS}/24", "dev", self.host_if)
        _run("ip", "link", "set", self.host_if, "up")
        _run("ip", *ns, "addr", "add", f"{CLIENT_ADDRESS}/24", "dev", self.peer_if)
        _run("ip", *ns, "link", "set", self.peer_if, "up")
        _run("ip", *ns, "link", "set", "lo", "up")
        _run("ip", *ns, "route", "add", "default", "via", HOST_ADDRESS)
        _run("ip", *ns, "route", "add", "local", SOURCES, "dev", "lo")
        _run("ip", "route", "add", SOURCES, "via", CLIENT_ADDRESS)  # gone with the veth

    def _tw_reuse(self) -> None:
        before = TW_REUSE.read_text().strip()
        if before != "1":
            TW_REUSE.write_text("1")
            self._undo.append(("tcp_tw_reuse", lambda: TW_REUSE.write_text(before)))

    def start_backend(self, loadgen: Path, args: list[str], shm_dir: Path) -> None:
        """The static ``loadgen backend ARGS`` in a container on a network of its own."""
        import docker

        client = docker.from_env()
        image = _ensure_image(client, loadgen)
        network = client.networks.create(self.name, driver="bridge", labels={COMMENT: "1"})
        self._undo.append(("network", network.remove))
        shm_dir.mkdir(parents=True, exist_ok=True)
        container = client.containers.run(
            image,
            ["/loadgen", "backend", "--host", "0.0.0.0", *args],
            name=f"{self.name}-backend",
            detach=True,
            network=self.name,
            labels={COMMENT: "1"},
            volumes={str(shm_dir): {"bind": "/shm", "mode": "rw"}},
        )
        self._undo.append(("container", lambda: container.remove(force=True)))
        container.reload()
        self._container = container
        self.backend_address = container.attrs["NetworkSettings"]["Networks"][self.name][
            "IPAddress"
        ]
        self.backend_pid = int(container.attrs["State"]["Pid"])

    def backend_alive(self) -> bool:
        container = self._container
        if container is None:
            return False
        with contextlib.suppress(Exception):
            container.reload()  # type: ignore[attr-defined]
            return bool(container.status == "running")  # type: ignore[attr-defined]
        return False

    def open_direct(self) -> None:
        """The bench-only accept that lets clients reach the backend without a proxy."""
        spec = ["-s", CLIENTS, "-d", self.backend_address, "-m", "comment", "--comment", COMMENT]
        for tool in FLAVOURS:
            if _run(tool, "-w", "5", "-S", "DOCKER-USER", check=False).returncode != 0:
                continue
            _run(tool, "-w", "5", "-I", "DOCKER-USER", "1", *spec, "-j", "ACCEPT")
            self._undo.append(
                (
                    f"{tool} accept",
                    lambda t=tool: _run(t, "-w", "5", "-D", "DOCKER-USER", *spec, "-j", "ACCEPT"),
                )  # fmt: skip
            )

    # -- use -------------------------------------------------------------------------------
    def prefix(self) -> list[str]:
        """Run a program inside the client namespace."""
        return ["ip", "netns", "exec", self.name]

    def client_args(self) -> list[str]:
        """What loadgen's clients need here: their sources and the backend they may reach."""
        return ["--src-base", SOURCE_BASE, "--allow-target", self.backend_address]

    # -- tear down -------------------------------------------------------------------------
    def close(self) -> list[str]:
        """Undo everything; what could not be undone (also printed)."""
        failed = []
        while self._undo:
            what, undo = self._undo.pop()
            try:
                undo()
            except Exception as exc:  # each step on its own
                failed.append(f"{what}: {exc}")
        for line in failed:
            print(f"bench: could not undo {line}")
        return failed


def _ensure_image(client: object, loadgen: Path) -> str:
    """An image holding only the static loadgen (docker import: nothing is pulled)."""
    data = loadgen.read_bytes()
    tag = f"{IMAGE_REPO}:{hashlib.sha256(data).hexdigest()[:12]}"
    images = client.images  # type: ignore[attr-defined]
    with contextlib.suppress(Exception):
        images.get(tag)
        return tag
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("loadgen")
        info.mode, info.size = 0o755, len(data)
        tar.addfile(info, io.BytesIO(data))
        shm = tarfile.TarInfo("shm")
        shm.type, shm.mode = tarfile.DIRTYPE, 0o777
        tar.addfile(shm)
    repo, _, version = tag.partition(":")
    client.api.import_image_from_data(buf.getvalue(), repository=repo, tag=version)  # type: ignore[attr-defined]
    images.get(tag)
    return tag
