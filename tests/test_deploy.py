"""The Grafana dashboard and the Prometheus alert rules in deploy/ hold up against the real
tools and the real daemon.

promtool (Debian's `prometheus` package, installed by scripts/test-deps.sh) checks and unit-tests
the alert rules, and parses every dashboard query: each becomes a recording rule of a generated
rules file, so the PromQL parser is Prometheus' own. The metric names of the queries and rules are
then looked up in the `/metrics` of a running daemon with a route that relays, a route whose
upstream refuses, a UDP route and a Docker engine that does not answer, so every per-route,
per-member and per-engine series exists. No Docker engine is needed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.daemon_kit import DaemonProcess, unique_namespace
from tests.echo_server import echo_server, udp_echo_server
from tests.helpers import eventually, free_port, tcp_exchange, udp_exchange

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
DASHBOARD = DEPLOY / "grafana" / "godoxy-streams.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERT_TESTS = DEPLOY / "prometheus" / "alerts.test.yml"
LOCAL = "127.0.0.1"

PENDING: set[str] = set()
"""Metrics the dashboard and the alerts use before the daemon exports them. Drop a name here as
soon as the daemon has it (the live test fails until then)."""

# -- metric names out of PromQL ---------------------------------------------------------------

_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_TOKENS = re.compile(r"\d[\w.]*|([A-Za-z_:][\w:]*)(\s*\()?")
_KEYWORDS = {"and", "or", "unless", "offset", "bool", "inf", "nan", "group_left", "group_right"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions,
    aggregations, keywords, label names or numbers."""
    for pattern in (_STRINGS, _MATCHERS, _RANGES, _LABEL_LISTS):
        expr = pattern.sub(" ", expr)
    names = set()
    for token in _TOKENS.finditer(expr):
        name, call = token.group(1), token.group(2)
        if name and not call and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('a_total{x="b_total", y=~"$route"}', {"a_total"}),
        ("sum by (alias, le) (rate(x_bucket[5m]))", {"x_bucket"}),
        (
            "histogram_quantile(0.99, sum without (le) (rate(h_bucket[$__rate_interval])))",
            {"h_bucket"},
        ),
        ("a / on (instance) group_left (engine) b > bool 1e-9", {"a", "b"}),
        ("count(x == 0) or vector(0)", {"x"}),
        ("time() - max(ts offset 5m)", {"ts"}),
        ("a unless b and c:recorded", {"a", "b", "c:recorded"}),
        ("rate(x[5m:30s] @ end())", {"x"}),
        ("label_replace(x, \"dst\", \"$1\", 'src', '(.*)')", {"x"}),
    ],
)
def test_metric_names_of_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


# -- the files --------------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def panels(container: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in container.get("panels", []):
        yield panel
        yield from panels(panel)  # a collapsed row holds its panels


def panel_queries() -> dict[str, str]:
    """Every dashboard query by a recording-rule name, the variables' selectors included."""
    queries = {}
    for panel in panels(dashboard()):
        for target in panel.get("targets", []):
            queries[f"dashboard:panel{panel['id']}_{target['refId']}"] = target["expr"]
    for var in dashboard()["templating"]["list"]:
        if var["type"] == "query":
            selector = re.fullmatch(r"label_values\((.+), *\w+\)", var["definition"])
            assert selector, var["definition"]
            queries[f"dashboard:variable_{var['name']}"] = selector.group(1)
    return queries


def alert_rules() -> dict[str, str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def as_promql(query: str) -> str:
    """A Grafana query as plain PromQL: interval macros become a duration, variables a regex."""
    query = re.sub(r"\$\{?__\w+\}?", "5m", query)
    return re.sub(r"\$\{?\w+\}?", ".*", query)


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: apt-get install prometheus (scripts/test-deps.sh)")
    return found


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_alert_rules_pass_promtool_check(promtool: str) -> None:
    done = run(promtool, "check", "rules", str(ALERTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in done.stdout


def test_alerts_fire_when_and_only_when_they_should(promtool: str) -> None:
    done = run(promtool, "test", "rules", str(ALERT_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    tested = set(re.findall(r"alertname: (\w+)", ALERT_TESTS.read_text()))
    assert tested == set(alert_rules()), "every alert has a promtool test"


def test_every_dashboard_query_parses_as_promql(promtool: str, tmp_path: Path) -> None:
    queries = panel_queries()
    rules = [{"record": name, "expr": as_promql(expr)} for name, expr in queries.items()]
    generated = tmp_path / "dashboard-queries.yml"
    generated.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = run(promtool, "check", "rules", str(generated))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout
    assert len(rules) > 25


def test_dashboard_is_an_importable_grafana_dashboard() -> None:
    board = dashboard()
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"]
    assert board["schemaVersion"] >= 39 and board["uid"] == "godoxy-streams"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert {"route", "source", "instance"} <= set(variables)
    source = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    cells: set[tuple[int, int]] = set()
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in panels(board):
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, panel["title"]
        mine = {(pos["x"] + x, pos["y"] + y) for x in range(pos["w"]) for y in range(pos["h"])}
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
        for target in panel.get("targets", []):
            assert panel["datasource"] == target["datasource"] == source, panel["title"]
    route_queries = [q for q in panel_queries().values() if 'alias=~"$route"' in q]
    assert len(route_queries) > 15, "the per-route panels follow the route variable"


# -- against a live daemon --------------------------------------------------------------------


def exported_names(text: str) -> set[str]:
    """The sample names of a Prometheus text exposition."""
    return {m.group(1) for m in re.finditer(r"^([A-Za-z_:][\w:]*)[{ ]", text, re.MULTILINE)}


def test_every_metric_the_dashboard_and_alerts_use_is_exported(tmp_path: Path) -> None:
    tcp_port, refused_port, dead_upstream = (free_port() for _ in range(3))
    udp_port = free_port("udp")
    with echo_server() as upstream, udp_echo_server() as udp_upstream:
        routes = tmp_path / "routes.yml"
        routes.write_text(
            "routes:\n"
            f"  echo: {{scheme: tcp, bind: {LOCAL}, port: '{tcp_port}:{upstream}'}}\n"
            f"  refused: {{scheme: tcp, bind: {LOCAL}, port: '{refused_port}:{dead_upstream}'}}\n"
            f"  dns: {{scheme: udp, bind: {LOCAL}, port: '{udp_port}:{udp_upstream}'}}\n"
        )
        absent_engine = f"unix://{tmp_path / 'no-engine.sock'}"
        args = ("--routes", str(routes), "--docker", absent_engine)
        daemon = DaemonProcess(tmp_path, *args, namespace=unique_namespace())
        daemon.start(wait_healthy=False)  # healthy or not with its engine away: either will do
        try:
            assert tcp_exchange(LOCAL, tcp_port, b"ping") == b"ping"
            assert udp_exchange(LOCAL, udp_port, b"ping", timeout=3) == b"ping"
            try:
                refused = tcp_exchange(LOCAL, refused_port, b"ping")
            except OSError:  # reset, or not connected any more when it half-closes
                refused = b""
            assert refused == b"", "nothing relayed from an upstream that refuses"

            def scrape() -> str:
                url = f"http://{LOCAL}:{daemon.api_port}/metrics"
                with urllib.request.urlopen(url, timeout=5) as response:
                    text = str(response.read().decode())
                return text if 'reason="refused"' in text and "engine=" in text else ""

            text = eventually(scrape, what="the refused dial and the absent engine in /metrics")
        finally:
            assert daemon.stop() == 0
    used = set().union(*map(metric_names, [*panel_queries().values(), *alert_rules().values()]))
    exported = exported_names(text)
    assert 'godoxy_streams_docker_connected{engine="local"} 0.0' in text
    assert "godoxy_streams_udp_datagrams_dropped_total{" in text
    assert used - exported == PENDING, "names the daemon does not export, beyond PENDING"
