"""Operator settings: one schema, built once in the CLI and passed down.

Sources, lowest to highest: defaults, an optional YAML file (``--config``), environment
variables ``GODOXY_STREAMS_<FIELD>`` (nested with ``__``, lists comma-separated or JSON), and
command-line flags. No other module reads the environment.
"""

from __future__ import annotations

import contextvars
import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from godoxy_streams.docker_endpoints import EngineSettings, default_engines
from godoxy_streams.errors import ConfigError

_yaml_data: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "yaml", default=None
)

CommaList = Annotated[tuple[str, ...], NoDecode]


def _split(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return tuple(yaml.safe_load(text))
        return tuple(item.strip() for item in text.replace(",", " ").split() if item.strip())
    return value


def _cidrs(values: tuple[str, ...]) -> tuple[str, ...]:
    out = []
    for item in values:
        try:
            out.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or CIDR") from None
    return tuple(out)


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AclSettings(_Group):
    """The global ACL, checked before any route's own list."""

    allow: CommaList = ()
    deny: CommaList = ()

    _split = field_validator("allow", "deny", mode="before")(_split)

    @field_validator("allow", "deny")
    @classmethod
    def _valid(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _cidrs(value)


class LimitSettings(_Group):
    dial_timeout: float = Field(5.0, gt=0, description="seconds to wait for an upstream to accept")
    max_connections: int | None = Field(None, ge=1, description="default per TCP route")
    max_sessions: int = Field(10_000, ge=1, description="default UDP session table size")
    udp_timeout: float = Field(60.0, gt=0, description="default UDP session idle timeout")
    per_source_connections: int | None = Field(
        None, ge=1, description="concurrent connections / UDP sessions per client address"
    )
    per_source_rate: float | None = Field(
        None, gt=0, description="new connections / UDP sessions per second per client address"
    )
    per_source_burst: int = Field(20, ge=1, description="burst allowed above per_source_rate")
    max_total_connections: int | None = Field(
        None,
        ge=1,
        description="connections and UDP sessions of all routes together (default: no cap "
        "but the descriptor budget)",
    )
    proxy_header_timeout: float = Field(
        3.0, gt=0, description="seconds a trusted peer has to send its PROXY header"
    )
    tls_hello_timeout: float = Field(
        5.0, gt=0, description="seconds a client of an SNI socket has to send its ClientHello"
    )
    tls_handshake_timeout: float = Field(
        10.0, gt=0, description="seconds a terminated TLS handshake may take"
    )
    api_connections: int = Field(
        32, ge=1, le=4096, description="status API connections at once (its own budget)"
    )


class LogSettings(_Group):
    level: Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"
    access_log: bool = True

    @property
    def access_log_asked(self) -> bool:
        """Whether the operator set ``access_log: true`` (not just left the default): with
        the fast path on, only then does every route stay in userspace for its lines."""
        return self.access_log and "access_log" in self.model_fields_set

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class Settings(BaseSettings):
    """Every operator setting of godoxy-streams."""

    model_config = SettingsConfigDict(
        env_prefix="GODOXY_STREAMS_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    api: str = Field("127.0.0.1:8899", description="HOST:PORT of the status API ('' to disable)")
    api_token: str | None = Field(
        None, min_length=16, description="bearer token the API requires (needed off loopback)"
    )
    namespace: str = Field("proxy", min_length=1, description="label namespace")
    default_bind: str = Field("0.0.0.0", description="listen address when a route names none")
    docker: Annotated[tuple[EngineSettings, ...], NoDecode] = Field(default_factory=default_engines)
    no_docker: bool = Field(False, description="serve static routes only")
    routes_file: Path | None = None
    state_dir: Path = Field(
        Path("/var/lib/godoxy-streams"),
        description="where picked listen ports are kept (ports.json); if it cannot be written, "
        "a private directory in /tmp, said once in the log",
    )
    allowed_targets: CommaList = ()
    proxy_protocol_trusted: CommaList = ()
    tls_port: int | None = Field(
        None, ge=1, le=65535, description="GoDoxy's shared TLS port: TCP routes there go by SNI"
    )
    certificates_dir: Path | None = Field(
        None, description="certificates for TLS termination (NAME.crt + NAME.key, NAME.pem)"
    )
    tls_client_cas: Annotated[dict[str, Path], NoDecode] = Field(
        default_factory=dict, description="client CA profiles for tls_client_ca: name -> file"
    )
    acl: AclSettings = AclSettings()
    limits: LimitSettings = LimitSettings()
    log: LogSettings = LogSettings()
    resync_interval: float = Field(30.0, gt=0, description="seconds between full relists")
    coalesce_window: float = Field(
        0.02, ge=0, lt=1, description="seconds to gather a burst of events (a lone one: at once)"
    )
    shutdown_grace: float = Field(10.0, ge=0, description="seconds to drain on SIGTERM")
    history_interval: float = Field(
        5.0, ge=0.05, le=60, description="seconds between samples of the routes' history (120 kept)"
    )
    fast_path: Literal["off", "auto", "nftables"] = Field(
        "off", description="forward plain routes with nftables DNAT (auto: when possible)"
    )

    _split = field_validator("docker", "allowed_targets", "proxy_protocol_trusted", mode="before")(
        _split
    )

    @field_validator("tls_client_cas", mode="before")
    @classmethod
    def _profiles(cls, value: Any) -> Any:
        """``name=/path/ca.pem,other=/path/b.pem`` (the environment's form) or a mapping."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("{"):
                return yaml.safe_load(text)
            pairs = [item.partition("=") for item in text.replace(",", " ").split()]
            if any(not sep or not name for name, sep, _ in pairs):
                raise ValueError("expected NAME=FILE pairs, comma-separated")
            return {name: path for name, _, path in pairs}
        return value

    @field_validator("tls_client_cas")
    @classmethod
    def _absolute(cls, value: dict[str, Path]) -> dict[str, Path]:
        for name, path in value.items():
            if not path.is_absolute():
                raise ValueError(f"client CA profile {name!r}: {path} is not an absolute path")
        return value

    @field_validator("docker")
    @classmethod
    def _distinct_names(cls, value: tuple[EngineSettings, ...]) -> tuple[EngineSettings, ...]:
        names = [engine.display_name(i) for i, engine in enumerate(value)]
        if len(set(names)) != len(names):
            raise ValueError(f"two Docker engines share a name: {names}")
        return value

    @field_validator("default_bind")
    @classmethod
    def _ip(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise ValueError("expected an IP address such as 0.0.0.0 or ::") from None

    @field_validator("proxy_protocol_trusted")
    @classmethod
    def _trusted(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _cidrs(value)

    @field_validator("api")
    @classmethod
    def _api(cls, value: str) -> str:
        if value and not api_address(value)[1] >= 0:
            raise ValueError("expected HOST:PORT")
        return value

    @model_validator(mode="after")
    def _token_off_loopback(self) -> Settings:
        host = api_address(self.api)[0] if self.api else "127.0.0.1"
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback and not self.api_token:
            raise ValueError(
                f"the API at {self.api} is reachable beyond loopback: set api_token "
                "(GODOXY_STREAMS_API_TOKEN) so it requires a bearer token"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls))

    @classmethod
    def load(cls, config_file: Path | None = None, **flags: Any) -> Settings:
        """Build the settings from every source; a bad value is a ``ConfigError``."""
        data: dict[str, Any] = {}
        if config_file is not None:
            try:
                loaded = yaml.safe_load(config_file.read_text()) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise ConfigError(f"cannot read config file {config_file}: {exc}") from exc
            if not isinstance(loaded, dict):
                raise ConfigError(f"config file {config_file}: expected a mapping of settings")
            data = loaded
        token = _yaml_data.set(data)
        try:
            return cls(**{k: v for k, v in flags.items() if v is not None})
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from None
        finally:
            _yaml_data.reset(token)


class _YamlSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return (_yaml_data.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_yaml_data.get() or {})


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "settings"
        lines.append(f"setting {where}: {error['msg']} (got {error.get('input')!r})")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def api_address(text: str) -> tuple[str, int]:
    """(host, port) of ``HOST:PORT``, or of the URL the daemon prints (``http://HOST:PORT/``);
    ("", -1) when it is neither."""
    text = text.removeprefix("http://").rstrip("/")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        return ("", -1)
    return (host.strip("[]") or "127.0.0.1", int(port))
