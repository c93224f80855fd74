"""Picked listen ports, kept (docs/labels.md "Kept picked ports"): a route whose listen port is
picked automatically (``port: 22`` with a stream scheme, ``:22``, ``0:22``) binds the port it
had before, across daemon restarts and its container's re-creation, while that port is free.

The memory is a small JSON file, ``<state_dir>/ports.json``, read at the first such route. It
maps a route's identity (``route_identity``: the engine; the compose project, service and
replica of a generated container name, else the container's name, or the routes file's entry;
the alias; the protocol; never a container id) to its port and when it was last used. It is
written atomically (a temporary file, then a rename) at most once per pass that changed it,
and stays bounded: entries unused for ``FORGET_AFTER`` are forgotten, and at most
``MAX_ENTRIES`` are kept. A corrupt file is a warning and a fresh start.

A kept port that is taken when the route binds (by another process, or by another route that
kept the same port: the first to bind keeps it) is replaced by a new pick, which is kept from
then on; the replacement is said once, in the log and in the route's ``notice``. The route's
desired-state key stays ``RouteKey(proto, bind, 0, owner)``: only the bind looks here.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from loguru import logger

from godoxy_streams.errors import PortInUse
from godoxy_streams.labels.context import replica_number
from godoxy_streams.model import RouteSpec

STATE_FILE = "ports.json"
FORGET_AFTER = 180 * 86400.0  # seconds an entry may go unused before it is forgotten
MAX_ENTRIES = 10_000
REFRESH_AFTER = 86400.0  # rewrite at least daily while routes hold kept ports ("last used")
MAX_FILE_BYTES = 8 << 20
VERSION = 1


class Bound(Protocol):
    @property
    def local_addr(self) -> tuple[str, int]: ...


S = TypeVar("S", bound=Bound)


def route_identity(spec: RouteSpec) -> str:
    """Who a route is, in words that survive its container's re-creation."""
    origin = spec.origin
    if origin.kind == "file":
        return f"file|{origin.name}|{spec.alias}|{spec.proto}"
    who = f"container:{origin.name}"
    if origin.compose_service:
        n = replica_number(origin.name, origin.compose_project, origin.compose_service)
        if n is not None:
            who = f"compose:{origin.compose_project}/{origin.compose_service}/{n}"
    return f"{origin.engine}|{who}|{spec.alias}|{spec.proto}"


def fallback_dir() -> Path:
    """Where ports are kept when the state directory cannot be written: a private directory
    in the temporary directory (``/tmp/godoxy-streams-10001`` for the image's user)."""
    return Path(tempfile.gettempdir()) / f"godoxy-streams-{os.getuid()}"


def unwritable(directory: Path, *, private: bool = False) -> str | None:
    """Why files cannot be created in ``directory`` (made if missing), or None. A ``private``
    directory must be a real directory of this user (it lives in a shared /tmp)."""
    try:
        directory.mkdir(mode=0o700 if private else 0o755, parents=True, exist_ok=True)
        if private:
            info = directory.lstat()
            if os.path.islink(directory) or info.st_uid != os.getuid():
                return "not a directory of this user"
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def choose_file(state_dir: Path) -> Path | None:
    """The state file: in ``state_dir``, else in ``fallback_dir()`` (said once), else None:
    ports are then kept only while the daemon runs (said once)."""
    problem = unwritable(state_dir)
    if problem is None:
        return state_dir / STATE_FILE
    fallback = fallback_dir()
    if fallback != state_dir and unwritable(fallback, private=True) is None:
        logger.warning(
            f"state directory {state_dir} is not writable ({problem}): picked listen ports are "
            f"kept in {fallback / STATE_FILE}, which a re-created daemon container loses; mount "
            f"a writable volume at {state_dir} or set state_dir"
        )
        return fallback / STATE_FILE
    logger.warning(
        f"state directory {state_dir} is not writable ({problem}), nor {fallback}: picked "
        "listen ports are kept only while the daemon runs"
    )
    return None


@dataclass
class Entry:
    port: int
    used: float  # when a route last held or released the port (seconds since the epoch)


def parse_entries(data: Any) -> dict[str, Entry]:
    """The entries of a state document; ValueError when it is not one."""
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise ValueError(f"expected a mapping with version {VERSION}")
    ports = data.get("ports")
    if not isinstance(ports, dict):
        raise ValueError("expected 'ports', a mapping of routes to ports")
    entries = {}
    for identity, item in ports.items():
        port = item.get("port") if isinstance(item, dict) else None
        used = item.get("used") if isinstance(item, dict) else None
        if type(port) is not int or not 1 <= port <= 65535:
            raise ValueError(f"{identity!r}: expected a port 1-65535")
        if not isinstance(used, int | float) or isinstance(used, bool):
            raise ValueError(f"{identity!r}: expected 'used', a time")
        entries[str(identity)] = Entry(port, float(used))
    return entries


def load_entries(path: Path) -> dict[str, Entry]:
    """What ``path`` remembers; nothing when it is missing, and a warning when it cannot be
    read or is corrupt (a corrupt file is set aside as ``<name>.corrupt``)."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        logger.warning(f"cannot read {path} ({exc.strerror or exc}): picked ports start afresh")
        return {}
    try:
        if len(raw) > MAX_FILE_BYTES:
            raise ValueError(f"larger than {MAX_FILE_BYTES} bytes")
        return parse_entries(json.loads(raw))
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        logger.warning(f"{path} is corrupt ({exc}): picked listen ports start afresh")
        with contextlib.suppress(OSError):
            os.replace(path, path.with_name(path.name + ".corrupt"))
        return {}


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` all at once: a reader sees the old file or the new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class KeptPorts:
    """The ports auto routes picked, by route identity; ``state_dir`` None: in memory only."""

    def __init__(
        self, state_dir: Path | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.state_dir = state_dir
        self.path: Path | None = None
        self.entries: dict[str, Entry] = {}
        self.live: dict[str, tuple[int, str, str]] = {}  # bound now: port, proto, route
        self._clock = clock
        self._opened = state_dir is None
        self._dirty = False
        self._saved_at = clock()
        self._write_error: str | None = None

    def _open(self) -> None:
        """Read the file at the first auto route (a daemon without one never touches it)."""
        if not self._opened and self.state_dir is not None:
            self._opened = True
            self.path = choose_file(self.state_dir)
            if self.path is not None:
                self.entries = load_entries(self.path)

    def recall(self, spec: RouteSpec) -> int | None:
        """The port kept for an auto route, or None."""
        self._open()
        entry = self.entries.get(route_identity(spec))
        return entry.port if entry is not None else None

    async def bind(
        self, spec: RouteSpec, serve: Callable[[int], Awaitable[S]]
    ) -> tuple[S, str | None]:
        """``serve(port)`` for ``spec``: its listen port; for an auto route its kept port,
        else a new pick (port 0), which is kept. Returns the stream and, when a kept port
        was taken, the notice that says so (also logged)."""
        if spec.listen_port:
            return await serve(spec.listen_port), None
        kept = self.recall(spec)
        taken: str | None = None
        if kept is not None:
            try:
                stream = await serve(kept)
            except PortInUse:
                taken = self._holder(spec, kept)
            else:
                self._hold(spec, kept)
                return stream, None
        stream = await serve(0)
        port = stream.local_addr[1]
        self._hold(spec, port)
        if taken is None:
            return stream, None
        notice = f"listen port {kept} (kept from before) is in use {taken}: picked {port}"
        logger.bind(route=spec.alias, source=spec.origin.name).warning(
            f"route {spec.alias!r} of {spec.origin.name}: {notice}"
        )
        return stream, notice

    def _holder(self, spec: RouteSpec, port: int) -> str:
        for held, proto, route in self.live.values():
            if held == port and proto == spec.proto:
                return f"by route {route}"
        return "by another process"

    def _hold(self, spec: RouteSpec, port: int) -> None:
        identity = route_identity(spec)
        entry = self.entries.get(identity)
        if entry is None or entry.port != port:
            self._dirty = True
        self.entries[identity] = Entry(port, self._clock())
        self.live[identity] = (port, spec.proto, f"{spec.origin.name}/{spec.alias}")

    def release(self, spec: RouteSpec, port: int) -> None:
        """An auto route stopped holding ``port``: the port stays kept for it."""
        if spec.listen_port:
            return
        identity = route_identity(spec)
        if self.live.get(identity, (0,))[0] == port:
            del self.live[identity]
        entry = self.entries.get(identity)
        if entry is not None and entry.port == port:
            entry.used = self._clock()
            self._dirty = True

    def save(self) -> None:
        """Write the file when something changed (or daily while routes hold kept ports),
        after forgetting what went unused too long. A failed write is said once per reason
        and retried at the next call."""
        now = self._clock()
        stale = self.live and now - self._saved_at > REFRESH_AFTER
        if not (self._dirty or stale):
            return
        for identity in self.live:
            self.entries[identity].used = now
        self.forget(now)
        self._saved_at = now
        if self.path is None:
            self._dirty = False
            return
        try:
            write_atomically(self.path, self.document())
        except OSError as exc:
            reason = exc.strerror or str(exc)
            if reason != self._write_error:
                logger.warning(f"cannot write {self.path} ({reason}): picked ports not saved")
            self._write_error = reason
            return
        self._dirty, self._write_error = False, None

    def forget(self, now: float) -> None:
        """Drop entries unused for ``FORGET_AFTER``, then the least recently used ones beyond
        ``MAX_ENTRIES``; never one a route holds now."""
        idle = sorted((e.used, k) for k, e in self.entries.items() if k not in self.live)
        excess = len(self.entries) - MAX_ENTRIES
        for n, (used, identity) in enumerate(idle):
            if n < excess or now - used > FORGET_AFTER:
                del self.entries[identity]

    def document(self) -> str:
        ports = {k: {"port": e.port, "used": round(e.used, 3)} for k, e in self.entries.items()}
        return json.dumps({"version": VERSION, "ports": ports}, indent=1, sort_keys=True) + "\n"
