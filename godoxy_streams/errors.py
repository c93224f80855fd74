"""The one exception tree of godoxy-streams.

    StreamsError
    ├── LabelError            a label (or static route field) that cannot become a route
    ├── ConfigError           an operator setting that is invalid
    ├── ConflictError         two routes claim overlapping listen sockets
    ├── EngineError           the Docker engine could not be reached or answered badly
    │   └── EngineUnavailable
    ├── ListenError           a listener could not be bound
    │   ├── PortInUse
    │   └── BindNotAllowed
    ├── UpstreamError         an upstream could not be dialled
    │   ├── DialTimeout
    │   └── DialRefused
    ├── Refused               a pre_dial hook refused a connection or UDP session
    └── ProxyProtocolError    a PROXY protocol header that is malformed or not there

Third-party errors are translated at the edge that meets them (the watcher for aiodocker and
aiohttp, the streams package for socket errors), with ``raise ... from exc``.
"""

from __future__ import annotations


class StreamsError(Exception):
    """Base of every error godoxy-streams raises on purpose."""


class LabelError(StreamsError):
    """A label or route field that cannot become a route.

    Carries what a user needs to fix it: the container, the alias (route), the label key,
    its value and what was expected.
    """

    def __init__(
        self,
        message: str,
        *,
        container: str = "",
        alias: str | None = None,
        label: str | None = None,
        value: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.container = container
        self.alias = alias
        self.label = label
        self.value = value

    def __str__(self) -> str:
        where = f'container "{self.container}"' if self.container else "route"
        if self.label is not None:
            return f"{where}: label {self.label}={_quote(self.value)}: {self.message}"
        if self.alias is not None:
            return f'{where}: route "{self.alias}": {self.message}'
        return f"{where}: {self.message}"

    def as_dict(self) -> dict[str, str | None]:
        return {
            "container": self.container,
            "alias": self.alias,
            "label": self.label,
            "value": self.value,
            "message": self.message,
        }


def _quote(value: str | None) -> str:
    if value is None:
        return "(unset)"
    text = value if len(value) <= 200 else value[:197] + "..."
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class ConfigError(StreamsError):
    """An operator setting (flag, environment, config file, routes file) is invalid."""


class ConflictError(StreamsError):
    """Two routes claim overlapping listen sockets."""


class EngineError(StreamsError):
    """The Docker engine answered badly or could not be reached."""


class EngineUnavailable(EngineError):
    """The Docker engine could not be reached at all."""


class ListenError(StreamsError):
    """A listener could not be bound."""


class PortInUse(ListenError):
    """The listen port is already taken by another socket."""


class BindNotAllowed(ListenError):
    """The process may not bind this address or port (e.g. a low port without the capability)."""


class UpstreamError(StreamsError):
    """The upstream could not be dialled."""


class DialTimeout(UpstreamError):
    """The upstream did not accept within the dial timeout."""


class DialRefused(UpstreamError):
    """The upstream refused the connection or is unreachable."""


class Refused(StreamsError):
    """A ``pre_dial`` hook refused a connection or UDP session."""


class ProxyProtocolError(StreamsError):
    """A PROXY protocol header (v1 or v2) that is malformed, oversized or missing."""
