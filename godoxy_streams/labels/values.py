"""Value converters for route fields: text in, a typed value or a ``ValueProblem`` out.

Each converter raises ``ValueProblem`` with the phrase a user needs ("expected ..."); the
caller adds the container, label and value. Pure functions, no I/O.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from godoxy_streams.server_names import patterns_text, sni_pattern

STREAM_SCHEMES = ("tcp", "udp", "tcp4", "tcp6", "udp4", "udp6", "tcp+udp")
HTTP_SCHEMES = ("http", "https", "h2c", "fileserver")


class ValueProblem(ValueError):
    """A field value that does not parse; the text says what was expected."""


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueProblem("expected a boolean: true/false/1/0/yes/no/on/off")


def _port_number(text: str, *, zero: bool = False) -> int:
    text = text.strip()
    if not text.isdigit() or not (0 if zero else 1) <= int(text) <= 65535:
        raise ValueProblem("expected [LISTEN:]TARGET with ports 1-65535")
    return int(text)


def parse_port(text: str) -> tuple[int | None, int]:
    """``LISTEN:TARGET`` -> (listen, target); ``TARGET``, ``:TARGET`` or GoDoxy's ``0:TARGET``
    -> (None, target): pick a free listen port."""
    parts = text.strip().split(":")
    if len(parts) == 1:
        return None, _port_number(parts[0])
    if len(parts) == 2:
        listen = None if parts[0].strip() == "" else _port_number(parts[0], zero=True)
        return listen or None, _port_number(parts[1])
    raise ValueProblem("expected [LISTEN:]TARGET with ports 1-65535")


def has_listen_part(text: str) -> bool:
    """Whether a port value names a non-zero listen port (``2222:22``), which makes a route a
    stream; ``0:22`` (pick a port) does not, as in GoDoxy."""
    head, sep, _ = text.strip().partition(":")
    return bool(sep) and head.strip().strip("0") != ""


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d|w|M)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,  # GoDoxy adds days, weeks and 30-day months to Go's units
    "w": 7 * 86400.0,
    "M": 30 * 86400.0,
}


def parse_duration(text: str) -> float:
    """Go-style durations (``90s``, ``1h``, ``500ms``, ``1m30s``) -> seconds, with GoDoxy's
    ``d``, ``w`` and ``M`` (30 days; ``m`` is minutes). A bare number other than 0 has no
    unit and is an error, as in Go."""
    raw = "".join(c if c == "M" else c.lower() for c in text.strip())
    if raw == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(raw):
        match = _DURATION_PART.match(raw, pos)
        if not match:
            raise ValueProblem("expected a duration such as 500ms, 90s, 5m or 1h")
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if not raw:
        raise ValueProblem("expected a duration such as 500ms, 90s, 5m or 1h")
    return total


def parse_positive_duration(text: str) -> float:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueProblem("expected a duration greater than zero, such as 5s")
    return seconds


def parse_positive_int(text: str) -> int:
    word = text.strip()
    if not word.isdigit() or int(word) < 1:
        raise ValueProblem("expected a whole number of at least 1")
    return int(word)


def parse_ip(text: str) -> str:
    """An IP literal, normalised (``::`` stays ``::``, ``0:0::1`` becomes ``::1``)."""
    try:
        return str(ipaddress.ip_address(text.strip().strip("[]")))
    except ValueError:
        raise ValueProblem("expected an IP address such as 0.0.0.0, :: or 127.0.0.1") from None


def split_list(value: str | Sequence[str]) -> list[str]:
    """A YAML list, or a string of items separated by commas and/or whitespace."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        return [item.strip().strip("'\"") for item in re.split(r"[,\s]+", text) if item.strip()]
    return [str(item).strip() for item in value if str(item).strip()]


def parse_networks(value: str | Sequence[str]) -> tuple[str, ...]:
    """IPs and CIDRs, v4 and v6, normalised to network form (``10.0.0.1`` -> ``10.0.0.1/32``)."""
    items = split_list(value)
    out = []
    for item in items:
        try:
            out.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ValueProblem(
                f"{item!r} is not an IP address or CIDR (expected e.g. 192.168.1.0/24 or ::1)"
            ) from None
    return tuple(out)


def parse_proxy_protocol(text: str) -> str | None:
    word = text.strip().lower()
    if word in _FALSE or word in {"", "none"}:
        return None
    if word in {"v1", "v2"}:
        return word
    raise ValueProblem("expected false, v1 or v2")


def parse_scheme(text: str) -> str:
    word = text.strip().lower().replace(" ", "")
    if word in STREAM_SCHEMES or word in HTTP_SCHEMES:
        return word
    raise ValueProblem("expected one of " + ", ".join(STREAM_SCHEMES))


def parse_choice(text: str, choices: Sequence[str]) -> str:
    word = text.strip().lower().replace("-", "_")
    for choice in choices:
        if word == choice or word == choice.replace("_", ""):
            return choice
    raise ValueProblem("expected one of " + ", ".join(choices))


def parse_server_names(value: str | Sequence[str]) -> tuple[str, ...]:
    """``sni``: server-name patterns (``*``, ``*.example.com``, exact names), a YAML list
    or a comma-separated string -> their written forms, sorted."""
    items = split_list(value)
    if not items:
        raise ValueProblem("expected server names such as db.example.com, *.example.com or *")
    patterns = []
    for item in items:
        try:
            patterns.append(sni_pattern(item))
        except ValueError as exc:
            raise ValueProblem(str(exc)) from None
    return patterns_text(patterns)
