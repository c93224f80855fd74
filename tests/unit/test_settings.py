"""One settings schema: defaults < YAML file < environment < flags; clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from godoxy_streams.errors import ConfigError
from godoxy_streams.settings import Settings, api_address


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    s = Settings.load()
    assert (s.api, s.namespace, s.default_bind) == ("127.0.0.1:8899", "proxy", "0.0.0.0")
    assert [e.url for e in s.docker] == ["unix:///var/run/docker.sock"]
    assert s.limits.dial_timeout == 5.0
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2375")
    assert [e.url for e in Settings.load().docker] == ["tcp://127.0.0.1:2375"]


def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.yml"
    config.write_text("namespace: fromfile\napi: 127.0.0.1:1\nlimits: {dial_timeout: 2}\n")
    monkeypatch.setenv("GODOXY_STREAMS_API", "127.0.0.1:2")
    monkeypatch.setenv("GODOXY_STREAMS_LIMITS__DIAL_TIMEOUT", "3")
    monkeypatch.setenv("GODOXY_STREAMS_ALLOWED_TARGETS", "10.0.0.0/8, db.internal")
    s = Settings.load(config, api="127.0.0.1:3")
    assert s.namespace == "fromfile" and s.api == "127.0.0.1:3"
    assert s.limits.dial_timeout == 3.0
    assert s.allowed_targets == ("10.0.0.0/8", "db.internal")


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        ({"default_bind": "nope"}, "setting default_bind: Value error, expected an IP address"),
        ({"api": "nowhere"}, "setting api"),
        ({"proxy_protocol_trusted": ("10.0.0.0/33",)}, "not an IP address or CIDR"),
        ({"log": {"level": "LOUD"}}, "setting log.level"),
        ({"bogus": 1}, "setting bogus"),
    ],
)
def test_bad_values_are_config_errors(flags: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match="invalid configuration") as info:
        Settings.load(**flags)
    assert needle in str(info.value)


def test_unreadable_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        Settings.load(tmp_path / "missing.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        Settings.load(bad)


def test_api_off_loopback_requires_a_token() -> None:
    with pytest.raises(ConfigError, match="set api_token"):
        Settings.load(api="0.0.0.0:8899")
    assert Settings.load(api="0.0.0.0:8899", api_token="x" * 32).api_token == "x" * 32
    assert Settings.load(api="[::1]:8899").api_token is None
    with pytest.raises(ConfigError, match="api_token"):
        Settings.load(api_token="short")


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.0.0.1:8899", ("127.0.0.1", 8899)),
        (":8899", ("127.0.0.1", 8899)),
        ("[::1]:8899", ("::1", 8899)),
        ("http://127.0.0.1:8899", ("127.0.0.1", 8899)),  # as the daemon's log prints it
        ("http://127.0.0.1:8899/", ("127.0.0.1", 8899)),
        ("127.0.0.1", ("", -1)),
        ("127.0.0.1:99999", ("", -1)),
    ],
)
def test_api_address_takes_host_port_or_the_printed_url(
    text: str, address: tuple[str, int]
) -> None:
    assert api_address(text) == address


def test_the_printed_url_is_loopback_like_host_port() -> None:
    assert Settings.load(api="http://127.0.0.1:8899").api_token is None


def test_tls_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.yml"
    config.write_text(
        "tls_port: 443\ncertificates_dir: /etc/godoxy/certs\n"
        "tls_client_cas: {corp: /etc/godoxy/corp.pem}\n"
    )
    s = Settings.load(config)
    assert (s.tls_port, s.certificates_dir) == (443, Path("/etc/godoxy/certs"))
    assert s.tls_client_cas == {"corp": Path("/etc/godoxy/corp.pem")}
    monkeypatch.setenv("GODOXY_STREAMS_TLS_CLIENT_CAS", "a=/ca/a.pem, b=/ca/b.pem")
    monkeypatch.setenv("GODOXY_STREAMS_TLS_PORT", "8443")
    s = Settings.load()
    assert s.tls_client_cas == {"a": Path("/ca/a.pem"), "b": Path("/ca/b.pem")}
    assert s.tls_port == 8443 and s.certificates_dir is None


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("corp", "expected NAME=FILE pairs"),
        ("corp=ca.pem", "not an absolute path"),
    ],
)
def test_bad_client_ca_profiles(value: str, needle: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GODOXY_STREAMS_TLS_CLIENT_CAS", value)
    with pytest.raises(ConfigError, match=needle):
        Settings.load()


def test_tls_port_range() -> None:
    with pytest.raises(ConfigError, match="setting tls_port"):
        Settings.load(tls_port=70000)
