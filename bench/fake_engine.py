"""A simulated Docker engine for the scale benchmark: the daemon's view of N containers, cheap.

It serves, over a unix socket, the parts of the Engine API the daemon reads: ``/_ping``,
``/version``, ``/info``, ``GET /containers/json``, ``GET /containers/{id}/json`` and the
``/events`` stream with its ``filters`` and ``since``, with or without a ``/v1.NN`` prefix. It
holds N labelled containers in memory (one TCP route each: ``proxy.aliases`` and
``proxy.<alias>.port: LISTEN:TARGET``, listen ports from ``--port-base`` up) and emits container
events on command. No container runs: each has an address on a fake network in 198.18.0.0/15
(RFC 2544's benchmark range), so the benchmark runs the daemon in a network namespace of its
own where that range is local. Documents are shaped like Docker 20.10's, so the daemon decodes
about as much JSON as it would from a real engine.

Control, on the same socket (JSON bodies): ``POST /_bench/add`` (start new containers),
``POST /_bench/remove`` (kill, die, disconnect, destroy), ``POST /_bench/wait-inspected`` (until
the daemon has inspected containers after their last event), ``POST /_bench/drop-streams``
(end every event stream, as an engine restart does), ``GET /_bench/stats``. Anything else is
answered 404 and counted by path in the stats, so a daemon that starts calling something new
shows up there. ``python -m bench.fake_engine --socket PATH --containers N`` serves it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import ipaddress
import json
import re
import resource
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

API_VERSION = "1.41"
IMAGE = "bench/echo:latest"
IMAGE_ID = "sha256:" + hashlib.sha256(IMAGE.encode()).hexdigest()
FAKE_RANGE = ipaddress.IPv4Network("198.18.0.0/15")
PER_NETWORK = 250  # containers per fake network, as on real bridges (1,024 ports at most)
HISTORY = 20_000  # events kept for ``since`` replays
BENCH_LABEL = "godoxy-streams-bench"
VERSIONED = re.compile(r"^/v1\.\d+(?=/)")
INSPECT_PATH = re.compile(r"^/containers/([^/]+)/json$")


def _hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class FakeContainer:
    index: int
    labelled: bool
    port: int
    namespace: str
    target_port: int
    probes: bool
    state: str = "created"
    created: float = field(default_factory=time.time)
    id: str = ""
    name: str = ""

    def __post_init__(self) -> None:
        kind = "r" if self.labelled else "plain"
        self.name = f"scale-{kind}-{self.index:05d}"
        self.id = _hex(self.name)

    @property
    def network(self) -> str:
        return f"fake-net-{self.index // PER_NETWORK}"

    @property
    def address(self) -> str:
        return str(FAKE_RANGE.network_address + 2 + self.index)

    def labels(self) -> dict[str, str]:
        labels = {
            BENCH_LABEL: "scale",
            "com.docker.compose.project": "scale",
            "com.docker.compose.service": f"svc{self.index}",
            "com.docker.compose.container-number": "1",
            "com.docker.compose.oneoff": "False",
            "com.docker.compose.version": "2.24.6",
            "com.docker.compose.config-hash": _hex(f"cfg{self.index}"),
            "com.docker.compose.project.working_dir": "/srv/scale",
            "com.docker.compose.project.config_files": "/srv/scale/compose.yml",
        }
        if self.labelled:
            ns, alias = self.namespace, f"r{self.index}"
            labels[f"{ns}.aliases"] = alias
            labels[f"{ns}.{alias}.port"] = f"{self.port}:{self.target_port}"
            if not self.probes:
                labels[f"{ns}.{alias}.healthcheck.disable"] = "true"
        return labels

    def _network_doc(self) -> dict[str, Any]:
        return {
            "IPAMConfig": None,
            "Links": None,
            "Aliases": None,
            "NetworkID": _hex(self.network),
            "EndpointID": _hex(self.id)[:64] if self.state == "running" else "",
            "Gateway": "198.18.0.1" if self.state == "running" else "",
            "IPAddress": self.address if self.state == "running" else "",
            "IPPrefixLen": 15 if self.state == "running" else 0,
            "IPv6Gateway": "",
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "MacAddress": "02:42:c6:12:00:02" if self.state == "running" else "",
            "DriverOpts": None,
        }

    def list_entry(self) -> dict[str, Any]:
        status = "Up 2 minutes" if self.state == "running" else "Exited (137) 1 second ago"
        return {
            "Id": self.id,
            "Names": ["/" + self.name],
            "Image": IMAGE,
            "ImageID": IMAGE_ID,
            "Command": "/echo",
            "Created": int(self.created),
            "Ports": [{"PrivatePort": self.target_port, "Type": "tcp"}],
            "Labels": self.labels(),
            "State": self.state,
            "Status": status,
            "HostConfig": {"NetworkMode": self.network},
            "NetworkSettings": {"Networks": {self.network: self._network_doc()}},
            "Mounts": [],
        }

    def inspect_doc(self) -> dict[str, Any]:
        running = self.state == "running"
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime(self.created))
        exposed = f"{self.target_port}/tcp"
        return {
            "Id": self.id,
            "Created": stamp,
            "Path": "/echo",
            "Args": [],
            "State": {
                "Status": self.state,
                "Running": running,
                "Paused": False,
                "Restarting": False,
                "OOMKilled": False,
                "Dead": False,
                "Pid": 4000 + self.index if running else 0,
                "ExitCode": 0 if running else 137,
                "Error": "",
                "StartedAt": stamp,
                "FinishedAt": "0001-01-01T00:00:00Z",
            },
            "Image": IMAGE_ID,
            "Name": "/" + self.name,
            "RestartCount": 0,
            "Driver": "overlay2",
            "Platform": "linux",
            "HostConfig": {"NetworkMode": self.network, "PortBindings": {}, "AutoRemove": False},
            "Config": {
                "Hostname": self.id[:12],
                "ExposedPorts": {exposed: {}},
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": None,
                "Image": IMAGE,
                "Entrypoint": ["/echo"],
                "Labels": self.labels(),
            },
            "NetworkSettings": {
                "Ports": {exposed: None},
                "Networks": {self.network: self._network_doc()},
            },
        }


def parse_filters(raw: str | None) -> dict[str, set[str]]:
    """Docker's ``filters`` query value: ``{"key": ["v", ...]}`` or ``{"key": {"v": true}}``."""
    parsed = json.loads(raw) if raw else {}
    return {str(k): set(v) if isinstance(v, list | dict) else {str(v)} for k, v in parsed.items()}


def event_matches(filters: dict[str, set[str]], event: dict[str, Any]) -> bool:
    actor = event["Actor"]
    attrs: dict[str, str] = actor["Attributes"]
    for key, wanted in filters.items():
        if key == "type" and event["Type"] not in wanted:
            return False
        if key == "event" and event["Action"].split(":")[0] not in wanted:
            return False
        if key == "container" and event["Type"] == "container":
            if not wanted & {actor["ID"], attrs.get("name", "")}:
                return False
        if key == "label":
            pairs = {w.partition("=") for w in wanted}
            if not all(attrs.get(k) == v if eq else k in attrs for k, eq, v in pairs):
                return False
    return True


class FakeEngine:
    """The engine's state and the events it has emitted; see the module docstring."""

    def __init__(
        self, *, namespace: str = "proxy", port_base: int = 20000, target_port: int = 7,
        probes: bool = False,
    ) -> None:  # fmt: skip
        self.namespace, self.port_base = namespace, port_base
        self.target_port, self.probes = target_port, probes
        self.containers: dict[str, FakeContainer] = {}
        self.next_index = 0
        self.requests: Counter[str] = Counter()
        self.unknown: Counter[str] = Counter()
        self.history: deque[tuple[int, dict[str, Any], bytes]] = deque(maxlen=HISTORY)
        self.streams: dict[asyncio.Queue[bytes | None], dict[str, set[str]]] = {}
        self.subscriptions = 0
        self.last_event: dict[str, int] = {}  # container id -> time_ns of its last event
        self.last_inspect: dict[str, int] = {}
        self.inspected = asyncio.Condition()
        self._list_cache: dict[str, bytes] = {}

    # -- state changes ---------------------------------------------------------------------
    def populate(self, count: int) -> None:
        """``count`` labelled running containers, without events (they existed before)."""
        for _ in range(count):
            box = self._new(labelled=True)
            box.state = "running"

    def _new(self, *, labelled: bool) -> FakeContainer:
        index = self.next_index
        self.next_index += 1
        port = self.port_base + index
        box = FakeContainer(index, labelled, port, self.namespace, self.target_port, self.probes)
        self.containers[box.id] = box
        return box

    def add(self, *, labelled: bool) -> tuple[FakeContainer, int]:
        """Create and start a container (create, network connect, start events); the
        ``start`` event's time_ns."""
        box = self._new(labelled=labelled)
        self._emit("container", "create", box)
        box.state = "running"
        self._list_cache.pop(box.id, None)
        self._emit("network", "connect", box)
        return box, self._emit("container", "start", box)

    def remove(self, box: FakeContainer) -> int:
        """``docker rm -f``: kill (SIGKILL), die, network disconnect, destroy; the kill
        event's time_ns."""
        killed = self._emit("container", "kill", box, signal="9")
        box.state = "exited"
        self._list_cache.pop(box.id, None)
        self._emit("container", "die", box, exitCode="137")
        self._emit("network", "disconnect", box)
        del self.containers[box.id]
        self._emit("container", "destroy", box)
        return killed

    def _emit(self, kind: str, action: str, box: FakeContainer, **extra: str) -> int:
        now = time.time_ns()
        if kind == "network":
            attrs = {"container": box.id, "name": box.network, "type": "bridge"}
            actor: dict[str, Any] = {"ID": _hex(box.network), "Attributes": attrs}
        else:
            attrs = {**box.labels(), "image": IMAGE, "name": box.name, **extra}
            actor = {"ID": box.id, "Attributes": attrs}
        event: dict[str, Any] = {"Type": kind, "Action": action, "Actor": actor, "scope": "local"}
        if kind == "container":
            event.update(status=action, id=box.id, **{"from": IMAGE})
        event.update(time=now // 1_000_000_000, timeNano=now)
        line = json.dumps(event).encode() + b"\n"
        self.history.append((now, event, line))
        self.last_event[box.id] = now
        for queue, filters in self.streams.items():
            if event_matches(filters, event):
                queue.put_nowait(line)
        return now

    def drop_streams(self) -> int:
        for queue in self.streams:
            queue.put_nowait(None)
        return len(self.streams)

    # -- documents -------------------------------------------------------------------------
    def list_body(self, filters: dict[str, set[str]], all_: bool) -> bytes:
        chunks = []
        for box in self.containers.values():
            if not all_ and box.state != "running":
                continue
            if "label" in filters and not event_matches({"label": filters["label"]}, _labels(box)):
                continue
            chunk = self._list_cache.get(box.id)
            if chunk is None:
                chunk = self._list_cache[box.id] = json.dumps(box.list_entry()).encode()
            chunks.append(chunk)
        return b"[" + b",".join(chunks) + b"]"

    def find(self, ref: str) -> FakeContainer | None:
        box = self.containers.get(ref)
        if box is None:
            name = ref.lstrip("/")
            box = next((b for b in self.containers.values() if b.name == name), None)
        if box is None and len(ref) >= 4:
            box = next((b for b in self.containers.values() if b.id.startswith(ref)), None)
        return box

    async def note_inspect(self, ref: str, box: FakeContainer | None) -> None:
        key = box.id if box is not None else ref
        self.last_inspect[key] = time.time_ns()
        async with self.inspected:
            self.inspected.notify_all()

    def inspected_after_event(self, ids: list[str]) -> bool:
        return all(self.last_inspect.get(i, 0) > self.last_event.get(i, 0) for i in ids)

    def stats(self) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "containers": len(self.containers),
            "running": sum(1 for b in self.containers.values() if b.state == "running"),
            "requests": dict(self.requests),
            "unknown": dict(self.unknown),
            "streams": len(self.streams),
            "subscriptions": self.subscriptions,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "maxrss_kib": usage.ru_maxrss,
        }


def _labels(box: FakeContainer) -> dict[str, Any]:
    return {"Type": "container", "Action": "", "Actor": {"ID": box.id, "Attributes": box.labels()}}


def main(argv: list[str] | None = None) -> int:
    from bench.fake_engine_http import serve_forever

    parser = argparse.ArgumentParser(
        prog="python -m bench.fake_engine",
        description="Serve a simulated Docker engine with N labelled containers on a unix socket.",
    )
    parser.add_argument("--socket", type=Path, required=True, help="unix socket path to serve")
    parser.add_argument("--containers", type=int, default=0, help="labelled containers (0)")
    parser.add_argument("--namespace", default="proxy", help="label namespace (proxy)")
    parser.add_argument("--port-base", type=int, default=20000, help="first listen port (20000)")
    parser.add_argument("--target-port", type=int, default=7, help="container port (7)")
    parser.add_argument(
        "--probes", action="store_true", help="leave health probes on (no healthcheck.disable)"
    )
    parser.add_argument(
        "--accept-targets",
        action="store_true",
        help="accept and close connections to the container port on every local address "
        "(only inside a network namespace where 198.18.0.0/15 is local)",
    )
    args = parser.parse_args(argv)
    engine = FakeEngine(
        namespace=args.namespace,
        port_base=args.port_base,
        target_port=args.target_port,
        probes=args.probes,
    )
    engine.populate(args.containers)
    asyncio.run(serve_forever(engine, args.socket, accept_targets=args.accept_targets))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
