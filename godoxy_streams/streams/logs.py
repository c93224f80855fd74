"""A stream's logger, bound on first use.

A loguru logger bound to a stream's protocol, listen address and name holds a copy of the
logger's options and extras (about a kilobyte); most routes never log after they start. So a
stream binds its logger only when it first logs, and forgets it when its address changes
(``forget_log``, at ``serve``)."""

from __future__ import annotations

from typing import Any

from loguru import logger

from godoxy_streams.streams.sockets import Address, where


class LazyLog:
    """Mixin: ``log`` is bound to ``log_protocol``, ``local_addr`` and ``name`` when used."""

    log_protocol = "tcp"
    _log: Any = None
    name: str

    @property
    def local_addr(self) -> Address:
        raise NotImplementedError

    @property
    def log(self) -> Any:
        bound = self._log
        if bound is None:
            bound = self._log = logger.bind(
                protocol=self.log_protocol, listen=where(self.local_addr), stream=self.name
            )
        return bound

    def forget_log(self) -> None:
        """The address changed (bound): the next line binds the logger anew."""
        self._log = None
