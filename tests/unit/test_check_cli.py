"""``godoxy-streams check`` as a user runs it: exit codes, table, JSON shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from godoxy_streams.app.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_check_compose_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--compose", str(ROOT / "compose.example.yml")]) == 0
    out = capsys.readouterr().out
    assert "ssh    tcp     0.0.0.0:2222  ssh:22" in out and "3 route(s), 0 error(s)" in out


def test_check_compose_json_shape(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--json", "--compose", str(ROOT / "compose.example.yml")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["errors"] == []
    assert doc["routes"][0] == {
        "alias": "ssh",
        "scheme": "tcp",
        "bind": "0.0.0.0",
        "listen_port": 2222,
        "target_host": "ssh",
        "target_port": 22,
        "container": "ssh",
        "engine": "local",
        "load_balance": None,
        "sni": [],
        "tls_termination": False,
        "tls_client_ca": None,
        "members": [{"alias": "ssh", "host": "ssh", "port": 22, "container": "ssh"}],
    }
    assert {r["scheme"] for r in doc["routes"] if r["alias"] == "dns"} == {"tcp", "udp"}


def test_check_broken_label_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "compose.yml"
    broken.write_text((ROOT / "compose.example.yml").read_text().replace("2222:22", "2222:22x"))
    assert main(["check", "--compose", str(broken)]) == 1
    out = capsys.readouterr().out
    assert (
        'error: container "ssh": label proxy.ssh.port="2222:22x": '
        "expected [LISTEN:]TARGET with ports 1-65535"
    ) in out


def test_check_predicts_conflicts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    compose = tmp_path / "compose.yml"
    compose.write_text(
        "services:\n  a: {labels: {proxy.a.port: '9000:1'}}\n"
        "  b: {labels: {proxy.b.port: '9000:2'}}\n"
    )
    assert main(["check", "--json", "--compose", str(compose)]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["routes"]) == 1 and "conflict" in doc["errors"][0]["message"]


def test_check_routes_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    routes = tmp_path / "routes.yml"
    routes.write_text("routes:\n  ssh-proxy: {scheme: tcp4, host: 10.0.0.5, port: 2222:22}\n")
    assert main(["check", "--routes", str(routes)]) == 0
    assert "file:ssh-proxy" in capsys.readouterr().out


def test_check_shows_a_pool_as_one_route_with_its_members(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    routes = tmp_path / "routes.yml"
    entry = "{{scheme: tcp, port: '2300:{p}', host: 127.0.0.1, load_balance: {{mode: ip_hash}}}}"
    routes.write_text(f"routes:\n  a: {entry.format(p=7)}\n  b: {entry.format(p=8)}\n")
    assert main(["check", "--routes", str(routes)]) == 0
    out = capsys.readouterr().out
    assert "127.0.0.1:7,127.0.0.1:8  file:a,file:b" in out and "1 route(s), 0 error(s)" in out


def test_bad_setting_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--default-bind", "nope", "--compose", "x"]) == 2
    assert "setting default_bind" in capsys.readouterr().err


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and "godoxy-streams" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert "--routes FILE" in out and "--no-docker" in out


def test_check_warns_about_yaml_1_1_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    compose = tmp_path / "compose.yml"
    compose.write_text("services:\n  a:\n    labels:\n      proxy.a.port: 2222:22\n")
    assert main(["check", "--compose", str(compose)]) == 0
    out = capsys.readouterr().out
    assert "label proxy.a.port is an unquoted number to YAML 1.1 readers" in out
    assert "133342" in out


def test_check_shows_server_names_and_the_name_a_conflict_is_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    compose = tmp_path / "compose.yml"
    compose.write_text(
        "services:\n"
        "  git: {labels: {proxy.git.port: '443:443', proxy.git.sni: git.example.com}}\n"
        "  wiki: {labels: {proxy.wiki.port: '443:8443', proxy.wiki.sni: '*.example.com'}}\n"
        "  mqtt:\n"
        "    labels: {proxy.mqtt.port: '443:1883', proxy.mqtt.sni: 'mqtt.test, git.example.com',\n"
        "             proxy.mqtt.tls_termination: 'true'}\n"
    )
    assert main(["check", "--compose", str(compose)]) == 1
    out = capsys.readouterr().out
    assert "0.0.0.0:443 sni git.example.com " in out and "0.0.0.0:443 sni *.example.com " in out
    assert (
        'error: container "mqtt": route "mqtt": conflict: server name "git.example.com" on '
        "tcp/0.0.0.0:443 "
        'is held by git (route "git")'
    ) in out
    assert "2 route(s), 1 error(s)" in out
