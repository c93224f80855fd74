"""The ``docker`` setting: URL shorthand and mappings, local vs remote engines, TLS options,
names, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from godoxy_streams.docker_endpoints import EngineSettings
from godoxy_streams.errors import ConfigError
from godoxy_streams.settings import Settings


def test_urls_from_the_environment_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GODOXY_STREAMS_DOCKER", "unix:///var/run/docker.sock, tcp://10.0.0.7:2375")
    local, remote = Settings.load().docker
    assert local.is_local and local.remote_host is None and local.display_name(0) == "local"
    assert not remote.is_local and remote.remote_host == "10.0.0.7"
    assert remote.client_url() == "http://10.0.0.7:2375"
    assert remote.display_name(1) == "tcp://10.0.0.7:2375"
    (flagged,) = Settings.load(docker=("tcp://h.example:2375",)).docker
    assert flagged.remote_host == "h.example"


def test_mappings_in_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    config.write_text(
        "docker:\n"
        "  - unix:///var/run/docker.sock\n"
        "  - {url: 'tcp://10.0.0.8:2376', name: edge, tls_cert_dir: /certs, address: 192.0.2.8}\n"
        "  - {url: 'tcp://127.0.0.1:2375', name: here, local: true}\n"
    )
    _, edge, here = Settings.load(config).docker
    assert edge.name == "edge" and edge.uses_tls and edge.client_url() == "https://10.0.0.8:2376"
    assert edge.remote_host == "192.0.2.8"
    assert here.is_local and here.remote_host is None


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("ssh://user@host", "ssh:// is not supported"),
        ("ftp://host", "expected one of unix, tcp, http, https"),
        ("tcp://", "names no host"),
    ],
)
def test_bad_endpoints_are_one_line_errors(entry: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.load(docker=(entry,))


def test_cert_and_key_go_together() -> None:
    with pytest.raises(ValueError, match="tls_cert and tls_key go together"):
        EngineSettings(url="tcp://h:2376", tls_cert=Path("/c.pem"))


def test_engine_names_must_differ() -> None:
    with pytest.raises(ConfigError, match="share a name"):
        Settings.load(docker=("tcp://a:1", "tcp://a:1"))


def test_missing_tls_files_are_a_config_error(tmp_path: Path) -> None:
    engine = EngineSettings(url="tcp://h:2376", tls_cert_dir=tmp_path)
    with pytest.raises(ConfigError, match="cannot load TLS files"):
        engine.ssl_context()


def test_docker_tls_environment_is_honoured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.9:2376")
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(tmp_path))
    (engine,) = Settings.load().docker
    assert engine.tls_cert_dir == tmp_path and engine.client_url() == "https://10.0.0.9:2376"


def test_a_forwarded_socket_can_stand_for_a_remote_host() -> None:
    engine = EngineSettings(url="unix:///tmp/edge.sock", local=False, address="192.0.2.1")
    assert not engine.is_local and engine.remote_host == "192.0.2.1"
    assert engine.client_url() == "unix:///tmp/edge.sock"


def test_engine_view_alpn_is_the_agents() -> None:
    """docker_endpoints sits below the agent and names the engine view's ALPN itself."""
    from godoxy_streams.agent.wire.header import ALPN_HTTP
    from godoxy_streams.docker_endpoints import ENGINE_VIEW_ALPN

    assert ENGINE_VIEW_ALPN == ALPN_HTTP
