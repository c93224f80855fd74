"""Junk HTTP into the status API and into the Docker socket filter: each gets an HTTP error
(or a close), the process lives on, and its log stays a log: every line one JSON object (or
one text line), no traceback, at most one line per junk request, and every junk request
accounted for (rate-limited lines carry a count)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.kit import (
    JUNK,
    LOCAL,
    bad_requests_logged,
    log_lines,
    raw_request,
    status_of,
    tcp_to,
    unix_to,
)
from tests.daemon_kit import DaemonProcess, unique_namespace
from tests.helpers import eventually, free_port

ROUNDS = 2  # each junk request is sent this many times
TOKEN = "chaos-token-" + "x" * 16


def send_all_junk(connect: object) -> dict[str, int | None]:
    """Every junk request ``ROUNDS`` times; the status each got (None: closed unanswered)."""
    answers: dict[str, int | None] = {}
    for _ in range(ROUNDS):
        for name, payload in JUNK.items():
            answers[name] = status_of(raw_request(connect, payload))
    return answers


def check_log(text: str, log_format: str, sent: int, lines_before: int) -> int:
    """The log checks of the module docstring; returns the lines the junk caused."""
    records = log_lines(text, log_format)
    caused = len(records) - lines_before
    assert caused <= sent, f"{caused} log lines for {sent} junk requests"
    if log_format == "json":
        assert bad_requests_logged(text) == sent
    return caused


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_junk_into_the_status_api(tmp_path: Path, log_format: str) -> None:
    routes = tmp_path / "routes.yml"
    routes.write_text(f"routes:\n  a: {{scheme: tcp, bind: {LOCAL}, port: '{free_port()}:9'}}\n")
    args = ("--no-docker", "--routes", str(routes), "--log-format", log_format)
    env = {"GODOXY_STREAMS_API_TOKEN": TOKEN}
    d = DaemonProcess(tmp_path, *args, namespace=unique_namespace(), env=env).start()
    try:
        before = len(log_lines(d.log(), log_format))
        answers = send_all_junk(tcp_to(LOCAL, d.api_port))
        assert all(status is None or 400 <= status < 500 for status in answers.values()), answers
        bearer = b"GET /api/routes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xc3\xa9t\r\n\r\n"
        assert status_of(raw_request(tcp_to(LOCAL, d.api_port), bearer)) == 401
        sent = ROUNDS * len(JUNK)
        if log_format == "json":
            eventually(lambda: bad_requests_logged(d.log()) == sent, what="junk all counted")
        assert d.health()[0] == 200
        caused = check_log(d.log(), log_format, sent, before)
        print(f"API, {log_format}: {caused} log lines for {sent} junk requests; {answers}")
    finally:
        assert d.stop() == 0
    log_lines(d.log(), log_format)  # shutdown too


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory: a unix socket path must fit in 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="gds-chaos-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_junk_into_the_socket_filter(short_dir: Path) -> None:
    """The filter's own parser turns the junk away; no engine is needed for that (the
    filter's engine here is a socket nobody serves)."""
    listen, log_path = short_dir / "filter.sock", short_dir / "filter.log"
    cmd = [sys.executable, "-m", "godoxy_streams", "socket-proxy", "--listen", str(listen)]
    cmd += ["--engine", str(short_dir / "no-engine.sock"), "--log-format", "json"]
    cmd += ["--log-level", "DEBUG"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        eventually(lambda: os.path.exists(listen) and "does not answer" in log_path.read_text())
        before = len(log_lines(log_path.read_text(), "json"))
        answers = send_all_junk(unix_to(str(listen)))
        assert all(status is None or 400 <= status < 500 for status in answers.values()), answers
        sent = ROUNDS * len(JUNK)
        eventually(lambda: bad_requests_logged(log_path.read_text()) == sent, what="all counted")
        assert proc.poll() is None
        caused = check_log(log_path.read_text(), "json", sent, before)
        print(f"socket filter: {caused} log lines for {sent} junk requests; {answers}")
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    log_lines(log_path.read_text(), "json")
