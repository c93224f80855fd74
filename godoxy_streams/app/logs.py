"""Logging set-up (loguru): text or JSON lines on stderr, one call, done once at start.

Every line is one event, in both formats: a message's line breaks are escaped in text lines,
and an exception is summed up on its line (type, message, where it was raised) instead of
a multi-line traceback (JSON lines carry it as the ``error`` field). The standard library's
loggers (aiohttp, asyncio, warnings) are routed here too (``stdlib_logs``), so nothing
reaches stderr but these lines.
"""

from __future__ import annotations

import sys
from typing import Any

from loguru import logger

from godoxy_streams.app.stdlib_logs import route_stdlib_logging
from godoxy_streams.settings import LogSettings

TEXT_FORMAT = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> <level>{level: <7}</level> "
    "<level>{extra[one_line]}</level>{extra[extra_text]}\n"
)
JSON_TEXT = "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {name}:{function}:{line} - {message}\n"
HIDDEN = ("extra_text", "one_line")  # set by the text filter, not fields of the event
ERROR_MAX = 500  # characters of an exception's message kept on its line


def error_summary(exception: Any) -> str:
    """``Type: message (at file:line in function)`` of a loguru record's exception."""
    kind, value, tb = exception
    text = f"{getattr(kind, '__name__', 'error')}: {value}"
    if len(text) > ERROR_MAX:
        text = text[:ERROR_MAX] + "..."
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is not None:
        code = tb.tb_frame.f_code
        text += f" (at {code.co_filename}:{tb.tb_lineno} in {code.co_name})"
    return text


def _text_line(record: Any) -> bool:
    """The text sink's filter: the fields after the message, all on one line."""
    extra = record["extra"]
    fields = {k: v for k, v in extra.items() if k not in HIDDEN}
    line = record["message"].replace("\r", "\\r").replace("\n", "\\n")
    if record["exception"] is not None:
        line += f" error={error_summary(record['exception'])}"
    extra["one_line"] = line
    extra["extra_text"] = " " + " ".join(f"{k}={v}" for k, v in fields.items()) if fields else ""
    return True


def _json_line(record: Any) -> bool:
    """The JSON sink's filter: an exception's summary as the ``error`` field."""
    if record["exception"] is not None:
        record["extra"]["error"] = error_summary(record["exception"])
    return True


def _text_format(_: Any) -> str:
    return TEXT_FORMAT


def _json_text(_: Any) -> str:
    return JSON_TEXT


def setup_logging(settings: LogSettings) -> None:
    logger.remove()
    if settings.format == "json":
        logger.add(
            sys.stderr,
            level=settings.level,
            format=_json_text,
            filter=_json_line,
            serialize=True,
            backtrace=False,
            diagnose=False,
        )
    else:
        logger.add(
            sys.stderr,
            level=settings.level,
            format=_text_format,
            filter=_text_line,
            colorize=sys.stderr.isatty(),
            backtrace=False,
            diagnose=False,
        )
    route_stdlib_logging(logger.level(settings.level).no)


def route_logger(proto: str, listen: str, dst: str) -> object:
    return logger.bind(protocol=proto, listen=listen, dst=dst)
