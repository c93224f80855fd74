"""A unix-socket proxy in front of the Docker socket that a test can cut and restore, so the
daemon sees its engine go away and come back without touching the machine's own dockerd."""

from __future__ import annotations

import os
import selectors
import socket
import threading
from pathlib import Path

DOCKER_SOCKET = "/var/run/docker.sock"


class EngineProxy:
    def __init__(self, path: Path, upstream: str = DOCKER_SOCKET) -> None:
        self.path = path
        self.upstream = upstream
        self._listener: socket.socket | None = None
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def start(self) -> None:
        """Listen (again) at ``path``."""
        if self.path.exists():
            self.path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        listener.listen(64)
        self._listener = listener
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, args=(listener,), daemon=True)
        self._thread.start()

    def cut(self) -> None:
        """The engine is gone: stop listening, remove the socket, reset every connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.path.exists():
            os.unlink(self.path)
        with self._lock:
            for a, b in self._pairs:
                for s in (a, b):
                    try:
                        s.close()
                    except OSError:
                        pass
            self._pairs.clear()

    stop = cut

    def _serve(self, listener: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        sel.register(listener, selectors.EVENT_READ)
        peers: dict[socket.socket, socket.socket] = {}
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(timeout=0.05):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if sock is listener:
                        client, _ = listener.accept()
                        engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                        try:
                            engine.connect(self.upstream)
                        except OSError:
                            client.close()
                            continue
                        peers[client], peers[engine] = engine, client
                        with self._lock:
                            self._pairs.add((client, engine))
                        sel.register(client, selectors.EVENT_READ)
                        sel.register(engine, selectors.EVENT_READ)
                        continue
                    other = peers.get(sock)
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        data = b""
                    if data and other is not None:
                        try:
                            other.sendall(data)
                            continue
                        except OSError:
                            pass
                    for s in (sock, other):
                        if s is None:
                            continue
                        peers.pop(s, None)
                        try:
                            sel.unregister(s)
                        except (KeyError, ValueError):
                            pass
                        s.close()
        finally:
            for s in list(peers):
                try:
                    sel.unregister(s)
                except (KeyError, ValueError):
                    pass
                s.close()
            sel.unregister(listener)
            listener.close()
            sel.close()
