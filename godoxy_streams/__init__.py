"""godoxy-streams: TCP and UDP ports for Docker containers, by label.

The public API is re-exported here lazily (PEP 562): ``import godoxy_streams.decide.plan``
loads no event loop, socket or Docker code, and each name is imported on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_HOMES = {
    "BindNotAllowed": "errors",
    "ConfigError": "errors",
    "ConflictError": "errors",
    "DialRefused": "errors",
    "DialTimeout": "errors",
    "EngineError": "errors",
    "EngineUnavailable": "errors",
    "LabelError": "errors",
    "ListenError": "errors",
    "PortInUse": "errors",
    "StreamsError": "errors",
    "UpstreamError": "errors",
    "HealthCheck": "model",
    "RouteKey": "model",
    "RouteOrigin": "model",
    "RouteSpec": "model",
    "Settings": "settings",
    "DesiredState": "decide.desired",
    "build_desired": "decide.desired",
    "Plan": "decide.plan",
    "make_plan": "decide.plan",
    "ParseContext": "labels",
    "ParseResult": "labels",
    "parse_container": "labels",
    "parse_static_routes": "labels",
    "Snapshot": "snapshot",
    "StreamOptions": "streams.options",
    "TCPStream": "streams.tcp.stream",
    "UDPStream": "streams.udp.stream",
}

__all__ = [
    "BindNotAllowed",
    "ConfigError",
    "ConflictError",
    "DesiredState",
    "DialRefused",
    "DialTimeout",
    "EngineError",
    "EngineUnavailable",
    "HealthCheck",
    "LabelError",
    "ListenError",
    "ParseContext",
    "ParseResult",
    "Plan",
    "PortInUse",
    "RouteKey",
    "RouteOrigin",
    "RouteSpec",
    "Settings",
    "Snapshot",
    "StreamOptions",
    "StreamsError",
    "TCPStream",
    "UDPStream",
    "UpstreamError",
    "__version__",
    "build_desired",
    "make_plan",
    "parse_container",
    "parse_static_routes",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'godoxy_streams' has no attribute {name!r}")
    value = getattr(import_module(f"godoxy_streams.{home}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from godoxy_streams.decide.desired import DesiredState, build_desired
    from godoxy_streams.decide.plan import Plan, make_plan
    from godoxy_streams.errors import (
        BindNotAllowed,
        ConfigError,
        ConflictError,
        DialRefused,
        DialTimeout,
        EngineError,
        EngineUnavailable,
        LabelError,
        ListenError,
        PortInUse,
        StreamsError,
        UpstreamError,
    )
    from godoxy_streams.labels import (
        ParseContext,
        ParseResult,
        parse_container,
        parse_static_routes,
    )
    from godoxy_streams.model import HealthCheck, RouteKey, RouteOrigin, RouteSpec
    from godoxy_streams.settings import Settings
    from godoxy_streams.snapshot import Snapshot
    from godoxy_streams.streams.options import StreamOptions
    from godoxy_streams.streams.tcp.stream import TCPStream
    from godoxy_streams.streams.udp.stream import UDPStream
