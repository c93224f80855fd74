"""The TCP relay with hooks: pre_dial before the dial, the idle timeout, and on_read.

A stream uses these classes only when it has a hook or an idle timeout, so the plain
``relay`` classes keep the per-read path free of clocks and calls.
"""

from __future__ import annotations

import asyncio
import inspect

from godoxy_streams.errors import Refused
from godoxy_streams.streams.context import ConnContext
from godoxy_streams.streams.sockets import sock_addr
from godoxy_streams.streams.tcp.relay import Conn, ConnOwner, Upstream


class HookedUpstream(Upstream):
    """``Upstream`` that reports each read to its ``HookedConn``."""

    __slots__ = ()

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        conn.transport.write(data)
        conn.stream.stats.bytes_out += len(data)
        conn.touched()


class HookedConn(Conn):
    """``Conn`` with the pre_dial hook, the idle timeout and the ``on_read`` hook."""

    __slots__ = ("last", "idle_timer", "ctx")

    upstream_cls = HookedUpstream

    def __init__(self, stream: ConnOwner) -> None:
        super().__init__(stream)
        self.ctx: ConnContext | None = None
        self.idle_timer: asyncio.TimerHandle | None = None
        self.last = 0.0

    def start(self) -> None:
        stream = self.stream
        self.last = stream.loop.time()
        idle = stream.options.idle_timeout
        if idle is not None:
            self.idle_timer = stream.loop.call_at(self.last + idle, self.idle_check)
        if stream.pre_dial is None:
            self.dial(stream.target)
        else:
            self.dialing = stream.loop.create_task(self.dial_hooked())

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.touched()

    def touched(self) -> None:
        stream = self.stream
        self.last = stream.loop.time()
        if stream.on_read is not None:
            stream.call_hook(stream.on_read, self.context(stream.target))

    def stopped(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None

    def idle_check(self) -> None:
        stream = self.stream
        idle = stream.options.idle_timeout
        assert idle is not None
        due = self.last + idle
        if stream.loop.time() < due:
            self.idle_timer = stream.loop.call_at(due, self.idle_check)
            return
        self.idle_timer = None
        self.note("timed_out")
        stream.log.debug(f"connection idle for {idle:g}s; closing it")
        if self.buffered():
            self.kill()  # a peer that reads nothing would keep a graceful close waiting
        else:
            self.finish()

    async def dial_hooked(self) -> None:
        """Run the pre_dial hook, then dial as usual: where the stream points once the hook
        is done (a hook may wait for the upstream and move the stream to it; a pooled stream
        picks its member only now). Client bytes that arrive meanwhile are held (``hold``,
        bounded: reading pauses past ``HIGH_WATER``)."""
        stream = self.stream
        try:
            result = stream.pre_dial(self.context(stream.target)) if stream.pre_dial else None
            if result is not None and inspect.isawaitable(result):
                await result
        except Refused as exc:
            self.note("refused")
            stream.stats.refused += 1
            stream.refusals.note("refused", f"connection refused by pre_dial: {exc}")
            self.transport.close()
            return
        except Exception as exc:
            self.dial_failed(exc, "pre_dial", stream.target)
            return
        finally:
            self.dialing = None
        if not self.lost:
            self.dial(stream.target)

    def context(self, target: tuple[str, int]) -> ConnContext:
        ctx = self.ctx
        if ctx is None:
            t = self.transport
            ctx = self.ctx = ConnContext(
                "tcp",
                sock_addr(t.get_extra_info("peername")),
                sock_addr(t.get_extra_info("sockname")),
                target,
                self.stream.name,
            )
        return ctx
