"""Logging set-up (loguru): text or JSON lines on stderr, one call, done once at start."""

from __future__ import annotations

import sys

from loguru import logger

from godoxy_streams.settings import LogSettings

TEXT_FORMAT = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> <level>{level: <7}</level> "
    "<level>{message}</level>{extra[extra_text]}"
)


def _with_extra(record: dict) -> bool:  # type: ignore[type-arg]
    extra = {k: v for k, v in record["extra"].items() if k != "extra_text"}
    record["extra"]["extra_text"] = (
        " " + " ".join(f"{k}={v}" for k, v in extra.items()) if extra else ""
    )
    return True


def setup_logging(settings: LogSettings) -> None:
    logger.remove()
    if settings.format == "json":
        logger.add(sys.stderr, level=settings.level, serialize=True, backtrace=False)
    else:
        logger.add(
            sys.stderr,
            level=settings.level,
            format=TEXT_FORMAT,
            filter=_with_extra,  # type: ignore[arg-type]
            colorize=sys.stderr.isatty(),
            backtrace=False,
        )


def route_logger(proto: str, listen: str, dst: str) -> object:
    return logger.bind(protocol=proto, listen=listen, dst=dst)
