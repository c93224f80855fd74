"""The standard library's logging routed into loguru, so aiohttp, asyncio, aioquic and
``warnings`` write the daemon's own lines (``logs``) and never a raw traceback on stderr.

Client errors are the events a peer can cause at will: aiohttp's reports of a malformed
request (``HttpProcessingError``: bad request line, over-long line, too many headers, bad
``Content-Length`` or ``Transfer-Encoding``, ...) and connections the peer broke
(``ConnectionError``). Each is one ``bad_request`` or ``connection_error`` line without a
traceback, rate limited like the data plane's refusals (``RefusalLog``: at most one line per
kind per second, carrying the count), so a flood of junk costs no log I/O. Anything else
keeps its exception, which ``logs`` sums up on one line. Exceptions nobody could raise to a
caller (``sys.unraisablehook``) are logged the same way; one of them is a client's doing:
``ssl`` reports a TLS server name that is not ASCII as an unraisable ``UnicodeDecodeError``,
which becomes a rate-limited ``bad_server_name`` line.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError
from loguru import logger

from godoxy_streams.streams.admission import RefusalLog

DETAIL_MAX = 200  # characters of a client error's description kept


def client_error(record: logging.LogRecord) -> str | None:
    """The kind of client error ``record`` reports (see the module docstring), or None."""
    error = record.exc_info[1] if record.exc_info else None
    if isinstance(error, HttpProcessingError) and record.name.startswith("aiohttp"):
        return "bad_request"
    if isinstance(error, ConnectionError):
        return "connection_error"
    return None


def _describe(record: logging.LogRecord) -> str:
    error = record.exc_info[1] if record.exc_info else None
    peer = record.args[0] if isinstance(record.args, tuple) and record.args else None
    text = f"{type(error).__name__}: {error}" if error is not None else record.getMessage()
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    if len(text) > DETAIL_MAX:
        text = text[:DETAIL_MAX] + "..."
    return f"from {peer}: {text}" if peer else text


class LoguruHandler(logging.Handler):
    """A ``logging`` handler that writes each record as one loguru event."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            kind = client_error(record)
            if kind is not None and note_client_error(kind, _describe(record), "aiohttp"):
                return
            try:
                level: str | int = logger.level(record.levelname).name
            except ValueError:
                level = record.levelno
            exception = record.exc_info if record.exc_info and record.exc_info[0] else None
            if kind is not None:
                exception = None  # described on the line already
            log = logger.bind(logger=record.name)
            log.opt(exception=exception).log(level, record.getMessage())
        except Exception:
            self.handleError(record)


_LIMITED: dict[str, RefusalLog] = {}  # per logger name, for the running loop


def note_client_error(kind: str, detail: str, name: str) -> bool:
    """Count a client error in a rate-limited log (``RefusalLog``) bound to logger ``name``;
    False outside an event loop (the caller logs it itself then)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return False
    limited = _LIMITED.get(name)
    if limited is None or limited.loop is not loop:
        log = logger.bind(logger=name)
        limited = _LIMITED[name] = RefusalLog(lambda: log, loop)
    limited.note(kind, detail)
    return True


def _unraisable(unraisable: Any) -> None:
    exc = unraisable.exc_value
    name = unraisable.object
    if isinstance(exc, UnicodeDecodeError) and isinstance(name, bytes):
        # how ``ssl`` reports a client's TLS server name that is not ASCII (OpenSSL's
        # server-name callback, on a terminating socket): the client's bytes, no bug of ours
        detail = f"a TLS server name that is not ASCII: {name[:DETAIL_MAX]!r}"
        if note_client_error("bad_server_name", detail, "ssl"):
            return
    error = (type(exc), exc, unraisable.exc_traceback) if exc is not None else None
    where = f" in {unraisable.object!r}" if unraisable.object is not None else ""
    message = unraisable.err_msg or "Exception ignored"
    logger.opt(exception=error).warning(f"{message}{where}")


def route_stdlib_logging(level: int) -> None:
    """Send every ``logging`` record at ``level`` or above (and ``warnings``, and
    unraisable exceptions) to loguru; replaces the root logger's handlers."""
    logging.basicConfig(handlers=[LoguruHandler()], level=level, force=True)
    logging.captureWarnings(True)
    sys.unraisablehook = _unraisable
