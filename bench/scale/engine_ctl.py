"""The simulated engine (bench/fake_engine.py) as a child process, and its control client: the
benchmark asks it over its unix socket to start and remove containers and to say when the
daemon has inspected them."""

from __future__ import annotations

import http.client
import json
import socket
import sys
import time
from pathlib import Path
from subprocess import Popen
from typing import Any

from bench import procs
from bench.scale.measure import poll_until


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = str(path)

    def connect(self) -> None:  # closed by HTTPConnection.close(), also after a failure
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


class FakeEngineProcess:
    """``python -m bench.fake_engine`` holding ``containers`` labelled containers.
    ``accept_targets`` only inside the benchmark's network namespace (see the engine)."""

    def __init__(
        self, workdir: Path, containers: int, *, port_base: int, tag: str,
        namespace: str = "proxy", accept_targets: bool = False,
    ) -> None:  # fmt: skip
        self.namespace, self.port_base = namespace, port_base
        self.socket = workdir / f"engine-{tag}.sock"
        self.log_path = workdir / f"engine-{tag}.log"
        self.argv = [
            sys.executable, "-m", "bench.fake_engine",
            "--socket", str(self.socket),
            "--containers", str(containers),
            "--port-base", str(port_base),
            "--namespace", namespace,
        ]  # fmt: skip
        if accept_targets:
            self.argv.append("--accept-targets")
        self.proc: Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 120.0) -> None:
        self.log_path.unlink(missing_ok=True)
        self.proc = procs.spawn(self.argv, log=self.log_path)

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the fake engine exited; see {self.log_path}")
            try:
                return self.request("GET", "/_ping", timeout=1.0)[0] == 200
            except OSError:
                return False

        if poll_until(up, timeout, 0.05) is None:
            raise RuntimeError(f"the fake engine did not answer in {timeout:g}s")

    def stop(self) -> None:
        if self.proc is not None:
            procs.stop(self.proc, grace=5.0)

    def cpu_s(self) -> float:
        return procs.cpu_seconds([self.pid])

    def request(
        self, method: str, path: str, body: object = None, timeout: float = 60.0
    ) -> tuple[int, Any]:
        conn = _UnixConnection(self.socket, timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            raw = response.read()
            ctype = response.getheader("Content-Type") or ""
            return response.status, json.loads(raw) if "json" in ctype else raw
        finally:
            conn.close()

    def control(self, path: str, body: object = None, timeout: float = 60.0) -> dict[str, Any]:
        status, doc = self.request("POST", path, body if body is not None else {}, timeout)
        if status != 200 or not isinstance(doc, dict):
            raise RuntimeError(f"fake engine {path}: {status} {doc!r}")
        return doc

    # -- the commands ----------------------------------------------------------------------------
    def add(self, count: int = 1, *, labelled: bool = True) -> list[dict[str, Any]]:
        """Start new containers; each {"id", "name", "port", "start_ns"}."""
        added: list[dict[str, Any]] = self.control(
            "/_bench/add", {"count": count, "labelled": labelled}
        )["containers"]
        return added

    def remove(self, ids: list[str]) -> dict[str, int]:
        """``docker rm -f`` each; the time (ns) of each one's first event (kill)."""
        done: dict[str, int] = self.control("/_bench/remove", {"ids": ids})["kill_ns"]
        return done

    def wait_inspected(self, ids: list[str], timeout: float) -> bool:
        """Until the daemon inspected each container after its last event."""
        doc = self.control(
            "/_bench/wait-inspected", {"ids": ids, "timeout": timeout}, timeout=timeout + 10
        )
        return bool(doc["ok"])

    def drop_streams(self) -> int:
        return int(self.control("/_bench/drop-streams")["dropped"])

    def stats(self) -> dict[str, Any]:
        status, doc = self.request("GET", "/_bench/stats")
        if status != 200 or not isinstance(doc, dict):
            raise RuntimeError(f"fake engine stats: {status} {doc!r}")
        return doc

    def wait_subscriptions(self, more_than: int, timeout: float) -> bool:
        """Until the daemon subscribed to events more than ``more_than`` times in all."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if int(self.stats()["subscriptions"]) > more_than:
                return True
            time.sleep(0.02)
        return False
