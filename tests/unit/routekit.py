"""Builders for RouteSpec values in unit tests."""

from __future__ import annotations

from typing import Any

from godoxy_streams.model import RouteOrigin, RouteSpec


def route(
    alias: str = "a",
    port: int | None = 2222,
    *,
    scheme: str = "tcp",
    bind: str = "0.0.0.0",
    target: tuple[str, int] = ("10.0.0.2", 22),
    container: str = "web",
    created: float = 100.0,
    kind: str = "docker",
    cid: str | None = None,
    **extra: Any,
) -> RouteSpec:
    origin = RouteOrigin.model_validate(
        {
            "kind": kind,
            "name": container,
            "id": cid if cid is not None else f"id-{container}",
            "created": created,
        }
    )
    return RouteSpec.model_validate(
        {
            "alias": alias,
            "scheme": scheme,
            "bind": bind,
            "listen_port": port,
            "target_host": target[0],
            "target_port": target[1],
            "origin": origin,
            **extra,
        }
    )
