"""godoxy-streams: TCP and UDP ports for Docker containers, by label."""

from __future__ import annotations

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
from godoxy_streams.model import HealthCheck, RouteKey, RouteOrigin, RouteSpec

__version__ = "0.1.0"

__all__ = [
    "BindNotAllowed",
    "ConfigError",
    "ConflictError",
    "DialRefused",
    "DialTimeout",
    "EngineError",
    "EngineUnavailable",
    "HealthCheck",
    "LabelError",
    "ListenError",
    "PortInUse",
    "RouteKey",
    "RouteOrigin",
    "RouteSpec",
    "StreamsError",
    "UpstreamError",
    "__version__",
]
