"""The connection class a TCP stream uses, composed once per combination of the layers its
options need: ``proxy_in.ProxyIn`` (PROXY in), ``records.Counted`` (close records),
``guard.Guarded`` (admission, PROXY out), ``hooked.HookedConn`` (hooks, idle timeout), over
``relay.Conn``; and ``balanced.Balanced`` on top while a pool needs a choice. No feature, no
layer: a stream with no options relays with the plain ``Conn``.

The layers' per-connection attributes live in the ``__slots__`` of the composed class
(``SLOTS``), so each layer declares ``__slots__ = ()`` and they combine freely.
"""

from __future__ import annotations

from typing import cast

from godoxy_streams.streams.tcp.guard import Guarded
from godoxy_streams.streams.tcp.hooked import HookedConn
from godoxy_streams.streams.tcp.proxy_in import ProxyIn
from godoxy_streams.streams.tcp.records import counted_layers
from godoxy_streams.streams.tcp.relay import Conn

SLOTS = (
    "client",
    "peer",
    "local",
    "dst",
    "key",
    "outcome",
    "parser",
    "htimer",
    "parked",
    "sniff",
    "nin",
    "nout",
    "started",
    "t0",
)

_CLASSES: dict[tuple[bool, bool, bool], type[Conn]] = {}


def conn_class(*, hooked: bool, guarded: bool, recorded: bool, proxy_in: bool) -> type[Conn]:
    """The connection class for a stream: the plain relay unless something asks for more,
    else ``Guarded`` with the layers asked for (made once per combination)."""
    if not (guarded or recorded or proxy_in):
        return HookedConn if hooked else Conn
    made = _CLASSES.get((hooked, recorded, proxy_in))
    if made is None:
        bases: tuple[type, ...] = (ProxyIn,) if proxy_in else ()
        namespace: dict[str, object] = {"__slots__": SLOTS}
        if recorded:
            layers, upstream = counted_layers(hooked)
            bases += layers
            namespace["upstream_cls"] = upstream
        else:
            bases += (Guarded,)
        if hooked:
            bases += (HookedConn,)
        name = "".join(b.__name__ for b in bases)
        made = _CLASSES[(hooked, recorded, proxy_in)] = cast(
            "type[Conn]", type(name, bases, namespace)
        )
    return made
