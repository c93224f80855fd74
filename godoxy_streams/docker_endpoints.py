"""Docker engine endpoints: one entry of the ``docker`` setting, its TLS client context, its
name, and how its containers are reached.

An entry is a URL (``unix://``, ``tcp://``, ``http://``, ``https://``) or a mapping with the URL
and options. A ``unix://`` engine is local: routes dial the containers' own addresses. Any other
engine is taken as remote unless ``local: true``: routes dial ``address`` (default: the URL's
host) at the container's published port (docs/labels.md, "Where a route forwards to"). TLS
client certificates come from ``tls_cert_dir`` (Docker's ``ca.pem``/``cert.pem``/``key.pem``)
or the three file options; ``https://`` or any TLS option turns TLS on. ``agent://HOST:PORT`` is
a godoxy-streams agent: its API is read over mutual TLS (certificates required), and every route
to its containers is dialled through its tunnel (``agent.tunnel``), so the containers' own
addresses are the targets.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, model_validator

from godoxy_streams.errors import ConfigError

SCHEMES = ("unix", "tcp", "http", "https", "agent")
DEFAULT_SOCKET = "unix:///var/run/docker.sock"

# An agent serves its read-only engine view as plain HTTP/1.1 on its port (agent.wire.header
# ALPN_HTTP, the registered ALPN name; this module sits below the agent and names it itself).
ENGINE_VIEW_ALPN = "http/1.1"


class EngineSettings(BaseModel):
    """One Docker engine to watch."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    name: str | None = None  # shown in the API and logs; default "local" or the URL
    tls_cert_dir: Path | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    address: str | None = None  # where this host's published ports are dialled
    local: bool | None = None  # containers' own addresses reachable (default: unix:// only)

    @model_validator(mode="before")
    @classmethod
    def _from_url(cls, value: Any) -> Any:
        return {"url": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> EngineSettings:
        scheme = urlsplit(self.url).scheme
        if scheme == "ssh":
            raise ValueError(
                "ssh:// is not supported; "
                "forward the socket (ssh -L /tmp/remote.sock:/var/run/docker.sock HOST) "
                "and use unix:///tmp/remote.sock, or use tcp:// with TLS"
            )
        if scheme not in SCHEMES:
            raise ValueError(f"Docker endpoint {self.url!r}: expected one of {', '.join(SCHEMES)}")
        if scheme != "unix" and not urlsplit(self.url).hostname:
            raise ValueError(f"Docker endpoint {self.url!r} names no host")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if (
            self.is_agent
            and self.tls_cert_dir is None
            and (self.tls_cert is None or self.tls_ca is None)
        ):
            raise ValueError(
                f"{self.url}: an agent needs a client certificate (tls_cert_dir, or tls_ca, "
                "tls_cert and tls_key; `godoxy-streams agent certs` makes them)"
            )
        return self

    @property
    def is_agent(self) -> bool:
        return self.url.startswith("agent://")

    @property
    def agent_address(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        return (parts.hostname or "", parts.port or 8890)

    @property
    def is_local(self) -> bool:
        if self.local is not None:
            return self.local
        return self.url.startswith(("unix://", "agent://"))

    @property
    def remote_host(self) -> str | None:
        """The address routes to this engine's containers dial; None for a local engine."""
        if self.is_local:
            return None
        return self.address or urlsplit(self.url).hostname

    @property
    def uses_tls(self) -> bool:
        return self.url.startswith(("https://", "agent://")) or any(
            p is not None for p in (self.tls_cert_dir, self.tls_ca, self.tls_cert)
        )

    def client_url(self) -> str:
        """The URL for the Docker client (``tcp://`` becomes ``http(s)://``)."""
        parts = urlsplit(self.url)
        if parts.scheme == "agent":
            host, port = self.agent_address
            return f"https://{host}:{port}"
        if parts.scheme in ("tcp", "http") and self.uses_tls:
            return parts._replace(scheme="https").geturl()
        if parts.scheme == "tcp":
            return parts._replace(scheme="http").geturl()
        return self.url

    def display_name(self, index: int) -> str:
        if self.name:
            return self.name
        return "local" if index == 0 and self.url.startswith("unix://") else self.url

    def tls_files(self) -> tuple[Path | None, Path | None, Path | None]:
        """The CA, certificate and key files (``tls_cert_dir`` fills what is not named)."""
        folder = self.tls_cert_dir
        ca = self.tls_ca or (folder / "ca.pem" if folder else None)
        cert = self.tls_cert or (folder / "cert.pem" if folder else None)
        key = self.tls_key or (folder / "key.pem" if folder else None)
        return ca, cert, key

    def ssl_context(self, alpn: str | None = None) -> ssl.SSLContext | None:
        """The TLS client context (verifying the engine against ``ca``, presenting the client
        certificate; for an agent with ALPN ``alpn``, default its API's); None without TLS.
        Unreadable files are a ``ConfigError``."""
        if not self.uses_tls:
            return None
        ca, cert, key = self.tls_files()
        try:
            context = ssl.create_default_context(cafile=str(ca) if ca else None)
            if cert is not None and key is not None:
                context.load_cert_chain(str(cert), str(key))
            if self.is_agent:
                context.set_alpn_protocols([alpn or ENGINE_VIEW_ALPN])
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"Docker endpoint {self.url}: cannot load TLS files: {exc}") from exc
        return context


def default_engines() -> tuple[EngineSettings, ...]:
    """``DOCKER_HOST`` (with ``DOCKER_TLS_VERIFY``/``DOCKER_CERT_PATH``) or the local socket."""
    url = os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET
    cert_dir = os.environ.get("DOCKER_CERT_PATH")
    if os.environ.get("DOCKER_TLS_VERIFY") and cert_dir:
        return (EngineSettings(url=url, tls_cert_dir=Path(cert_dir)),)
    return (EngineSettings(url=url),)
