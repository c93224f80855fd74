"""The daemon under measurement: ``godoxy-streams run`` as a child process, and what /proc and
its status API say about it (CPU, RSS, descriptors, routes running, last pass)."""

from __future__ import annotations

import json
import resource
import shutil
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from subprocess import Popen
from typing import Any

from bench import procs
from bench.scale.measure import HOST, cpu_ns, fd_count, poll_until, wait_quiet

# Settings for every measured daemon: no periodic relist in the middle of an event measurement
# (the relist is measured on its own, by dropping the event stream).
CONFIG = "resync_interval: 3600\n"


def nofile_for_children() -> tuple[int, int]:
    """Raise our soft RLIMIT_NOFILE to the hard limit, so the daemon (a child) inherits it: it
    does not raise its own yet and needs a descriptor per listener. (soft, hard) after."""
    procs.raise_nofile()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft, hard


def free_api_port() -> int:
    """An ephemeral port for the status API (the kernel's pick: above the listen ranges)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def daemon_command() -> list[str]:
    script = Path(sys.executable).parent / "godoxy-streams"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "godoxy_streams"]


class Daemon:
    """One ``godoxy-streams run`` following ``docker_url``; ``stop()`` always ends it."""

    def __init__(self, docker_url: str, workdir: Path, *, namespace: str, tag: str) -> None:
        self.api_port = free_api_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"daemon-{tag}.log"
        config = workdir / f"daemon-{tag}.yml"
        config.write_text(CONFIG)
        self.argv = [
            *daemon_command(), "run",
            "--config", str(config),
            "--docker", docker_url,
            "--api", f"{HOST}:{self.api_port}",
            "--namespace", namespace,
            "--default-bind", HOST,
            "--log-level", "WARNING",
        ]  # fmt: skip
        self.proc: Popen[bytes] | None = None
        self.started = 0.0

    def start(self) -> None:
        self.log_path.unlink(missing_ok=True)
        self.started = time.monotonic()
        self.proc = procs.spawn(self.argv, log=self.log_path)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            procs.stop(self.proc, grace=10.0)

    def log_tail(self, size: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except OSError:
            return ""

    # -- readings ----------------------------------------------------------------------------
    def cpu_s(self) -> float:
        """utime + stime from /proc/PID/stat (10 ms ticks)."""
        return procs.cpu_seconds([self.pid])

    def cpu_ns(self) -> int:
        return cpu_ns(self.pid)

    def rss_kib(self) -> int:
        return procs.rss_kib([self.pid])

    def fds(self) -> int:
        return fd_count(self.pid)

    def quiet(self, quiet: float, timeout: float) -> bool:
        return wait_quiet(self.pid, quiet, timeout)

    # -- status API ----------------------------------------------------------------------------
    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes, float]:
        """(status, body, seconds); status 0 when nothing answered in time."""
        url = f"http://{HOST}:{self.api_port}{path}"
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                body: bytes = response.read()
                return int(response.status), body, time.monotonic() - t0
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read(), time.monotonic() - t0
        except (urllib.error.URLError, OSError, TimeoutError):
            return 0, b"", time.monotonic() - t0

    def health(self) -> dict[str, Any]:
        status, body, _ = self.get("/healthz")
        if status not in (200, 503):
            return {}
        doc: dict[str, Any] = json.loads(body)
        doc["http_status"] = status
        return doc

    def routes_running(self) -> int:
        return int(self.health().get("routes_running", -1))

    def wait_routes(
        self, count: int, timeout: float, interval: float = 0.02,
        trace: list[tuple[float, int]] | None = None,
    ) -> int | None:  # fmt: skip
        """Until /healthz is 200 with ``count`` routes running; the time (ns) it first was.
        ``trace`` gets (seconds since the call, routes running) at each change."""
        t0 = time.monotonic()

        def reached() -> bool:
            if not self.alive():
                raise RuntimeError(f"the daemon exited; log tail:\n{self.log_tail()}")
            doc = self.health()
            running = int(doc.get("routes_running", -1))
            if trace is not None and (not trace or trace[-1][1] != running):
                trace.append((round(time.monotonic() - t0, 3), running))
            return doc.get("http_status") == 200 and running == count

        return poll_until(reached, timeout, interval)

    def wait_pass_after(self, t_ns: int, timeout: float) -> bool:
        """Until the daemon's last reconcile pass finished after wall-clock ``t_ns``."""

        def passed() -> bool:
            last = self.health().get("last_sync")
            return last is not None and float(last) * 1e9 > t_ns

        return poll_until(passed, timeout, 0.02) is not None


def py_spy_path(given: str | None) -> str | None:
    """The py-spy binary to profile with: the one given, or one on PATH."""
    return given or shutil.which("py-spy")
