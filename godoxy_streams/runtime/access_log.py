"""Access log: one structured line per finished TCP connection and per ended UDP session
(client, route, target, bytes each way, duration, how it ended), at INFO.

In text format the fields follow the word ``access`` as key=value pairs; with
``--log-format json`` they are fields of the JSON record. The engine calls ``emit`` once per
connection, never per read.
"""

from __future__ import annotations

from collections.abc import Callable

from loguru import logger

from godoxy_streams.model import RouteSpec
from godoxy_streams.streams.context import ConnRecord
from godoxy_streams.streams.sockets import where


def access_logger(spec: RouteSpec) -> Callable[[ConnRecord], None]:
    """The ``on_close`` callback of one route's stream."""
    log = logger.bind(route=spec.alias, source=spec.origin.name)

    def emit(record: ConnRecord) -> None:
        fields: dict[str, object] = {
            "protocol": record.proto,
            "client": where(record.client),
            "target": where(record.target),
            "outcome": record.outcome,
            "bytes_in": record.bytes_in,
            "bytes_out": record.bytes_out,
            "duration": round(record.duration, 6),
        }
        if record.peer != record.client:
            fields["peer"] = where(record.peer)
        log.bind(**fields).info("access")

    return emit
