"""The daemon's log lines, in process: one line per event in text and JSON, exceptions summed
up on their line, the standard library's loggers and warnings routed in, and client errors
rate limited with their count."""

from __future__ import annotations

import io
import json
import logging
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.http_exceptions import BadStatusLine
from loguru import logger

from godoxy_streams.app.logs import setup_logging
from godoxy_streams.settings import LogSettings
from tests.chaos.kit import log_lines
from tests.helpers import eventually_async


@pytest.fixture
def log_to(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``log_to(format)`` sets the daemon's logging up on a buffer and returns it; the
    process's logging is put back afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, sys.unraisablehook)

    def setup(log_format: str) -> io.StringIO:
        buffer = io.StringIO()
        monkeypatch.setattr(sys, "stderr", buffer)
        setup_logging(LogSettings(level="DEBUG", format=log_format))
        return buffer

    yield setup
    logger.remove()
    logger.add(sys.__stderr__, level="DEBUG")
    root.handlers[:], sys.unraisablehook = saved[0], saved[2]
    root.setLevel(saved[1])
    logging.captureWarnings(False)


def fail() -> None:
    raise ValueError("boom\nsecond line")


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_an_exception_is_one_line(log_to: Any, log_format: str) -> None:
    buffer = log_to(log_format)
    try:
        fail()
    except ValueError:
        logger.exception("task failed\nwith a second line")
    logging.getLogger("some.library").error("lib says\nhi", exc_info=True)
    (task, library) = lines = buffer.getvalue().splitlines()
    log_lines(buffer.getvalue(), log_format)
    if log_format == "text":
        assert "task failed\\nwith a second line error=ValueError: boom\\nsecond line" in task
        assert "test_logs.py:" in task and " in fail)" in task
        assert "lib says\\nhi" in library and "logger=some.library" in library
    else:
        record = json.loads(lines[0])["record"]
        assert record["message"] == "task failed\nwith a second line"
        assert record["extra"]["error"].startswith("ValueError: boom\\nsecond line (at ")
        assert record["exception"]["type"] == "ValueError"


def test_warnings_and_unraisable_exceptions_are_lines(log_to: Any) -> None:
    buffer = log_to("json")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("careful\nnow", UserWarning, stacklevel=1)
    sys.unraisablehook(
        type(
            "U",
            (),
            {
                "exc_value": OSError("gone"),
                "exc_traceback": None,
                "err_msg": None,
                "object": "a transport",
                "exc_type": OSError,
            },
        )()  # fmt: skip
    )
    records = log_lines(buffer.getvalue(), "json")
    assert [r["record"]["level"]["name"] for r in records] == ["WARNING", "WARNING"]
    assert "careful" in records[0]["record"]["message"]
    assert records[1]["record"]["extra"]["error"].startswith("OSError: gone")


async def test_bad_requests_are_rate_limited_with_their_count(log_to: Any) -> None:
    buffer = log_to("json")
    server = logging.getLogger("aiohttp.server")
    for n in range(6):
        try:
            raise BadStatusLine(f"junk {n}")
        except BadStatusLine:
            server.exception("Error handling request from %s", "192.0.2.7")
    try:
        raise ConnectionResetError("reset by peer")
    except ConnectionResetError:
        logging.getLogger("asyncio").error("Fatal error on transport", exc_info=True)

    def counted() -> list[dict[str, Any]]:
        extras = [r["record"]["extra"] for r in log_lines(buffer.getvalue(), "json")]
        return [e for e in extras if e.get("event")]

    await eventually_async(lambda: len(counted()) == 3, 3, what="the counted lines")
    shown = sorted((e["event"], e["count"]) for e in counted())
    assert shown == [("bad_request", 1), ("bad_request", 5), ("connection_error", 1)]
    text = buffer.getvalue()
    assert "from 192.0.2.7: BadStatusLine" in text and "Traceback" not in text
