"""Run the real daemon (``godoxy-streams run``) as a subprocess for end-to-end tests: start it,
wait for /healthz, read /api/routes, stop it with SIGTERM and check it exits 0. ``prefix``
runs it under another command (``nsenter`` into a network namespace), with its API on
``api_host`` (off loopback it asks for a token, which the kit sends)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.helpers import eventually, free_port


class DaemonProcess:
    def __init__(
        self,
        workdir: Path,
        *args: str,
        namespace: str,
        env: dict[str, str] | None = None,
        prefix: Sequence[str] = (),
        api_host: str = "127.0.0.1",
        default_bind: str | None = "127.0.0.1",
        api_port: int | None = None,
    ):
        """``prefix``: a command the daemon runs under (e.g. ``prlimit``); ``api_port``: the
        status API's port (default: one that is free now)."""
        self.api_port = api_port or free_port("tcp")
        self.api_host = api_host
        self.namespace = namespace
        self.log_path = workdir / f"daemon-{self.api_port}.log"
        bind = ["--default-bind", default_bind] if default_bind else []
        self.args = [
            *prefix, sys.executable, "-m", "godoxy_streams", "run",
            "--api", f"{api_host}:{self.api_port}",
            "--namespace", namespace,
            *bind,
            "--log-level", "DEBUG",
            *args,
        ]  # fmt: skip
        self.token = None if api_host == "127.0.0.1" else f"token-{namespace}-{self.api_port}"
        self.env = {
            **os.environ,
            "GODOXY_STREAMS_STATE_DIR": str(workdir / "state"),
            **({"GODOXY_STREAMS_API_TOKEN": self.token} if self.token else {}),
            **(env or {}),
            "PYTHONUNBUFFERED": "1",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, wait_healthy: bool = True, timeout: float = 20.0) -> DaemonProcess:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        log.close()
        if wait_healthy:
            eventually(lambda: self.health()[0] == 200, timeout=timeout, what="daemon healthy")
        else:
            eventually(lambda: self.health()[0] in (200, 503), timeout=timeout, what="daemon API")
        return self

    def get(self, path: str) -> tuple[int, Any]:
        assert self.proc is not None and self.proc.poll() is None, self.log()
        request = urllib.request.Request(f"http://{self.api_host}:{self.api_port}{path}")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)
        except (urllib.error.URLError, ConnectionError):
            return 0, None

    def health(self) -> tuple[int, Any]:
        return self.get("/healthz")

    def routes(self) -> dict[str, Any]:
        status, body = self.get("/api/routes")
        assert status == 200, (status, body)
        return dict(body)

    def route(self, alias: str, scheme: str | None = None) -> dict[str, Any] | None:
        for row in self.routes()["routes"]:
            if row["alias"] == alias and (scheme is None or row["scheme"] == scheme):
                return dict(row)
        return None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, wait; the exit code (killed and -9 if it would not stop)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return -9
        return int(self.proc.returncode)

    def wait_for_log(self, needle: str, timeout: float = 10.0) -> None:
        eventually(lambda: needle in self.log(), timeout=timeout, what=f"log line {needle!r}")


def unique_namespace() -> str:
    return f"gdstest{os.getpid()}x{int(time.monotonic() * 1000) % 100000}"
