"""``check``'s summary for GoDoxy users: per container, the HTTP routes left to GoDoxy, the
HTTP-only labels ignored and the stream routes served, counted from the parse results'
structured ``ignored`` records; in the table when something was left to GoDoxy, always in
``--json``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from godoxy_streams.app.cli import main
from godoxy_streams.containers import ContainerInfo
from godoxy_streams.labels import ParseContext, parse_container
from godoxy_streams.labels.result import Ignored

GODOXY_COMPOSE = """\
services:
  whoami:
    image: traefik/whoami
    labels:
      proxy.aliases: whoami
      proxy.whoami.port: "80"
      proxy.whoami.middlewares.cidr_whitelist.allow: "10.0.0.0/8"
  gitea:
    image: gitea/gitea
    container_name: gitea
    labels:
      proxy.aliases: gitea, gitea-ssh
      proxy.#1.port: "3000"
      proxy.#2.scheme: tcp
      proxy.#2.port: "2222:22"
      proxy.#2.homepage.show: "false"
      proxy.no_tls_verifies: "true"
  dns:
    image: coredns/coredns
    labels:
      proxy.#1.scheme: udp
      proxy.#1.port: "0:53"
  off:
    image: alpine
    labels: {proxy.exclude: "true"}
  plain:
    image: alpine
"""


def run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, *args: str
) -> tuple[int, str]:
    path = tmp_path / "compose.yml"
    path.write_text(text)
    code = main(["check", "--compose", str(path), *args])
    return code, capsys.readouterr().out


def test_the_table_shows_per_container_what_was_left_to_godoxy_and_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(tmp_path, capsys, GODOXY_COMPOSE)
    assert code == 0
    block = out[out.index("per container:") :].splitlines()
    assert block == [
        "per container:",
        "  whoami: 1 HTTP route left to GoDoxy, 0 HTTP-only labels ignored, 0 stream routes served",
        '    route "whoami": not a stream route (no stream scheme and no LISTEN port)',
        "  gitea: 1 HTTP route left to GoDoxy, 2 HTTP-only labels ignored, 1 stream route served",
        "    proxy.no_tls_verifies: applies to HTTP routes only",
        '    route "gitea": not a stream route (no stream scheme and no LISTEN port)',
        "    proxy.#2.homepage.show: applies to HTTP routes only",
        "  dns: 0 HTTP routes left to GoDoxy, 0 HTTP-only labels ignored, 1 stream route served",
        "  off: excluded by its exclude label",
        "2 route(s), 0 error(s)",
    ]
    assert "note:" not in out  # each ignored item is said once, in the block


def test_json_carries_the_summary_of_every_labelled_container(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(tmp_path, capsys, GODOXY_COMPOSE, "--json")
    assert code == 0
    doc = json.loads(out)
    counts = {
        s["source"]: (s["http_routes"], s["http_labels"], s["stream_routes"], s["errors"])
        for s in doc["summary"]
    }
    assert counts == {
        "whoami": (1, 0, 0, 0),
        "gitea": (1, 2, 1, 0),
        "dns": (0, 0, 1, 0),
        "off": (0, 0, 0, 0),
    }
    (gitea,) = [s for s in doc["summary"] if s["source"] == "gitea"]
    assert gitea["ignored"][0] == {
        "kind": "http_label",
        "what": "proxy.no_tls_verifies",
        "why": "applies to HTTP routes only",
    }
    assert any('route "gitea" is not a stream route' in n for n in doc["notes"])


def test_a_file_of_stream_labels_only_prints_no_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "services:\n  ssh:\n    labels: {proxy.aliases: ssh, proxy.ssh.port: '2222:22'}\n"
    code, out = run(tmp_path, capsys, text)
    assert code == 0 and "per container" not in out
    code, out = run(tmp_path, capsys, text, "--json")
    assert json.loads(out)["summary"][0] == {
        "source": "ssh",
        "http_routes": 0,
        "http_labels": 0,
        "stream_routes": 1,
        "errors": 0,
        "excluded": False,
        "ignored": [],
    }


def test_conflicts_count_as_errors_and_pool_members_as_served(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = """\
services:
  a: {labels: {proxy.a.port: "9000:1", proxy.a.load_balance.mode: round_robin}}
  b: {labels: {proxy.b.port: "9000:1", proxy.b.load_balance.mode: round_robin}}
  c: {labels: {proxy.c.port: "9000:2", proxy.web.port: "3000"}}
"""
    code, out = run(tmp_path, capsys, text, "--json")
    assert code == 1
    summary = {s["source"]: s for s in json.loads(out)["summary"]}
    assert summary["a"]["stream_routes"] == summary["b"]["stream_routes"] == 1
    assert (summary["c"]["stream_routes"], summary["c"]["errors"]) == (0, 1)
    assert summary["c"]["http_routes"] == 1


def test_the_routes_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    routes = tmp_path / "routes.yml"
    routes.write_text(
        "app1: {port: 8080}\n"
        "example: {scheme: https, host: 10.0.0.1, port: 80, no_tls_verify: false}\n"
        "ssh: {scheme: tcp, host: 10.0.0.3, port: '2222:22'}\n"
        "app2: {scheme: udp, host: 10.0.0.2, port: '2223:dns'}\n"
    )
    assert main(["check", "--no-docker", "--routes", str(routes)]) == 1
    out = capsys.readouterr().out
    assert (
        "  routes file: 2 HTTP routes left to GoDoxy, 0 HTTP-only labels ignored, "
        "1 stream route served, 1 error"
    ) in out.splitlines()


@pytest.mark.parametrize(
    ("labels", "ignored"),
    [
        ({"proxy.app.port": "3000"}, [("http_route", "app")]),
        ({"proxy.app.scheme": "https", "proxy.app.port": "2222:22"}, [("http_route", "app")]),
        (
            {"proxy.ssh.port": "2222:22", "proxy.ssh.middlewares.a.b": "c"},
            [("http_label", "proxy.ssh.middlewares.a.b")],
        ),
        (
            {"proxy.ssh.port": "2222:22", "proxy.spas": "true"},
            [("http_label", "proxy.spas")],
        ),
        ({"proxy.ssh.port": "2222:22", "proxy.idle_timeout": "1h"}, []),  # sleep/wake: a note
        (
            {"proxy.ssh.port": "2222:22x", "proxy.ssh.homepage.name": "x"},
            [("http_label", "proxy.ssh.homepage.name")],
        ),
        ({"proxy.app.port": "3000", "proxy.app.prot": "x"}, []),  # an error, not a note
    ],
)
def test_parse_results_carry_what_they_ignored(
    labels: dict[str, str], ignored: list[tuple[str, str]]
) -> None:
    result = parse_container(
        ContainerInfo(id="c", name="box", labels=labels, networks={"n": "10.1.0.2"}),
        ParseContext(),
    )
    assert [(i.kind, i.what) for i in result.ignored] == ignored
    assert all(i.container == "box" and i.note in result.notes for i in result.ignored)


def test_an_ignored_items_note_is_the_one_the_daemon_logs() -> None:
    route = Ignored("box", "http_route", "app", "not a stream route (scheme http)")
    label = Ignored("box", "http_label", "proxy.spas", "applies to HTTP routes only")
    assert route.note == 'box: route "app" is not a stream route (scheme http): ignored'
    assert label.note == "box: label proxy.spas applies to HTTP routes only: ignored"
