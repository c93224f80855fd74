"""godoxy-streams: TCP and UDP ports for Docker containers, by label."""

from __future__ import annotations

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
from godoxy_streams.labels import ParseContext, ParseResult, parse_container, parse_static_routes
from godoxy_streams.model import HealthCheck, RouteKey, RouteOrigin, RouteSpec
from godoxy_streams.settings import Settings
from godoxy_streams.streams import StreamOptions, TCPStream, UDPStream

__version__ = "0.1.0"

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
