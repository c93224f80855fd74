"""docs/labels.md, the rules that keep a GoDoxy user's labels working: ``#1`` without aliases, the
default alias, empty values, HTTP-only labels in every form, guarded fields, unknown fields
whatever the route's kind, ``0:TARGET``."""

from __future__ import annotations

import pytest

from godoxy_streams.containers import ContainerInfo
from godoxy_streams.labels import ParseContext
from godoxy_streams.labels.context import default_alias
from godoxy_streams.labels.grammar import HTTP_SHORTCUTS

from .labelkit import IP, errors, parse, routes

COMPOSE = {"com.docker.compose.project": "shop", "com.docker.compose.service": "game"}


def test_index_one_without_aliases_is_the_default_alias() -> None:
    """GoDoxy's wiki "TCP Forwarding" example."""
    labels = {"proxy.#1.scheme": "tcp", "proxy.#1.port": "2222:22"}
    assert routes(labels, name="app") == [("app", "tcp", "0.0.0.0", 2222, IP, 22)]


def test_shortcuts_without_aliases_apply_to_the_default_alias() -> None:
    labels = {"proxy.ports": "5353:53", "proxy.schemes": "udp"}
    assert routes(labels, name="dns") == [("dns", "udp", "0.0.0.0", 5353, IP, 53)]


def test_index_one_beside_named_aliases_adds_the_default_alias() -> None:
    labels = {"proxy.ssh.port": "2222:22", "proxy.#1.port": "2223:23"}
    assert [(r[0], r[3]) for r in routes(labels, name="box")] == [("box", 2223), ("ssh", 2222)]


def test_index_past_one_without_aliases_is_an_error() -> None:
    (msg,) = errors({"proxy.#1.port": "1:2", "proxy.#2.port": "3:4"}, name="box")
    assert msg == (
        'container "box": label proxy.#2.port="3:4": #2 is out of range: without '
        'proxy.aliases only #1 (the default alias "box") is numbered'
    )


@pytest.mark.parametrize(
    ("name", "labels", "want"),
    [
        ("shop-game-1", COMPOSE, "game"),
        ("shop_game_2", COMPOSE, "game"),
        ("SHOP-GAME-3", COMPOSE, "game"),
        ("minecraft", COMPOSE, "minecraft"),  # container_name: chosen by the user
        ("shop-game-x", COMPOSE, "shop-game-x"),
        ("game.2", {"com.docker.compose.service": "game"}, "game"),  # a Swarm task
        ("game.2.kz4w1e0x", {"com.docker.compose.service": "game"}, "game"),
        ("Plain", {}, "plain"),
    ],
)
def test_default_alias(name: str, labels: dict[str, str], want: str) -> None:
    assert default_alias(ContainerInfo(id="x", name=name, labels=labels)) == want


@pytest.mark.parametrize(
    ("labels", "want"),
    [
        ({"proxy.a.port": "2222:22", "proxy.a.bind": ""}, ("a", "tcp", "0.0.0.0", 2222, IP, 22)),
        ({"proxy.a.scheme": "tcp", "proxy.a.port": ""}, ("a", "tcp", "0.0.0.0", None, IP, 6379)),
        ({"proxy.a.port": "2222:22", "proxy.a.host": " "}, ("a", "tcp", "0.0.0.0", 2222, IP, 22)),
        ({"proxy.*.port": "7:8", "proxy.a.port": ""}, ("a", "tcp", "0.0.0.0", 7, IP, 8)),
        ({"proxy.a": "", "proxy.a.port": "1:2"}, ("a", "tcp", "0.0.0.0", 1, IP, 2)),
        ({"proxy.aliases": "", "proxy.#1.port": "1:2"}, ("web", "tcp", "0.0.0.0", 1, IP, 2)),
        ({"proxy.network": "", "proxy.a.port": "1:2"}, ("a", "tcp", "0.0.0.0", 1, IP, 2)),
        ({"proxy.exclude": "", "proxy.a.port": "1:2"}, ("a", "tcp", "0.0.0.0", 1, IP, 2)),
        ({"proxy.a": "port: 1:2\nbind:\nhost: ''"}, ("a", "tcp", "0.0.0.0", 1, IP, 2)),
        ({"proxy.ports": "1:2, ", "proxy.binds": ""}, ("web", "tcp", "0.0.0.0", 1, IP, 2)),
    ],
)
def test_an_empty_value_is_no_label(
    labels: dict[str, str], want: tuple[str, str, str, int | None, str, int]
) -> None:
    assert routes(labels, ports=["6379/tcp"]) == [want]


def test_an_empty_block_is_a_route_without_fields() -> None:
    result = parse({"proxy.app": ""})
    assert result.routes == () and result.errors == ()
    assert any('route "app" is not a stream route' in n for n in result.notes)


@pytest.mark.parametrize(
    "labels",
    [
        {"proxy.a.load_balance.link": "x"},
        {"proxy.a.load_balance.options.header": "X-Forwarded-For"},
        {"proxy.a.load_balance": "link: x\noptions:\n  header: X-Real-IP"},
        {"proxy.a.loadBalance.sticky": "true"},
        {"proxy.a.healthcheck.path": "/ping", "proxy.a.healthcheck.use_get": "true"},
        {"proxy.a.middlewares.request.set_headers.X-Header": "v"},
        {"proxy.a.homepage": "name: App\nicon: '@selfhst/app.svg'"},
        {"proxy.a.no_tls_verify": "true", "proxy.a.ssl_protocols": "tlsv1.2, tlsv1.3"},
        {"proxy.a.root": "/srv", "proxy.a.spa": "true", "proxy.a.index": "index.html"},
        {"proxy.a.rules": "- name: x\n  do: pass", "proxy.a.rule_file": "embed://x.yml"},
        {"proxy.a.access_log.path": "/var/log/a.log", "proxy.a.proxmox.node": "pve"},
        {"proxy.a.idlewatcher.idle_timeout": "1h", "proxy.a.response_header_timeout": "30s"},
        {"proxy.a.max_conns_per_host": "10", "proxy.a.disable_compression": "true"},
        {"proxy.*": "middlewares:\n  cidr_whitelist:\n    allow: [10.0.0.0/8]"},
    ],
)
def test_http_only_labels_in_every_form_are_notes_on_a_stream_route(
    labels: dict[str, str],
) -> None:
    result = parse({"proxy.a.port": "2222:22", **labels})
    assert not result.errors, [str(e) for e in result.errors]
    assert len(result.routes) == 1
    notes = [n for n in result.notes if "applies to HTTP routes only" in n]
    assert len(notes) == len({n for n in notes}) >= 1


def test_an_empty_http_label_is_no_label() -> None:
    result = parse({"proxy.a.port": "2222:22", "proxy.a.middlewares.hideXForwarded": ""})
    assert len(result.routes) == 1 and not result.errors and not result.notes


def test_a_yaml_block_of_http_fields_gives_one_note_per_http_field() -> None:
    block = (
        "port: 2222:22\nmiddlewares:\n  a:\n    x: 1\n    y: 2\n  b:\n    z: 3\nhomepage:\n  n: 1"
    )
    result = parse({"proxy.a": block})
    assert sorted(n.split("label ")[1] for n in result.notes) == [
        "proxy.a[homepage] applies to HTTP routes only: ignored",
        "proxy.a[middlewares] applies to HTTP routes only: ignored",
    ]


@pytest.mark.parametrize("shortcut", sorted(HTTP_SHORTCUTS))
def test_http_shortcuts_are_one_note_and_never_an_alias(shortcut: str) -> None:
    labels = {"proxy.aliases": "ssh", "proxy.ssh.port": "2222:22", f"proxy.{shortcut}": "a, b, c"}
    result = parse(labels)
    assert not result.errors and [r.alias for r in result.routes] == ["ssh"]
    assert [n for n in result.notes if f"proxy.{shortcut}" in n] == [
        f"web: label proxy.{shortcut} applies to HTTP routes only: ignored"
    ]


def test_thirteen_http_shortcuts_with_inbound_mtls_profiles_read_as_guarded() -> None:
    assert len(HTTP_SHORTCUTS | {"inbound_mtls_profiles"}) == 13


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"proxy.a.tls_termination": "true"}, "applies to routes chosen by TLS server name"),
        ({"proxy.a.tls_termination": "maybe"}, "expected a boolean"),
        ({"proxy.a.inbound_mtls_profile": "corp"}, "inbound mTLS is not supported"),
        ({"proxy.a.agent": "agent-1"}, "agent is not allowed on a container's route"),
        ({"proxy.aliases": "a", "proxy.tls_terminations": "true"}, "applies to routes"),
        ({"proxy.aliases": "a", "proxy.inbound_mtls_profiles": "corp"}, "inbound mTLS"),
        ({"proxy.aliases": "a", "proxy.agents": "agent-1"}, "agent is not allowed"),
        ({"proxy.a": "tls_termination: true"}, "applies to routes chosen by TLS server name"),
    ],
)
def test_guarded_fields_are_errors_on_a_stream_route(labels: dict[str, str], message: str) -> None:
    result = parse({"proxy.a.port": "2222:22", **labels})
    assert result.routes == ()
    assert len(result.errors) == 1 and message in result.errors[0].message
    assert result.errors[0].label and result.errors[0].value


@pytest.mark.parametrize(
    "labels",
    [
        {"proxy.a.port": "2222:22", "proxy.a.tls_termination": "false"},
        {"proxy.a.port": "2222:22", "proxy.a.agent": ""},
        {"proxy.a.port": "3000", "proxy.a.tls_termination": "true", "proxy.a.agent": "x"},
        {"proxy.a.scheme": "https", "proxy.a.inbound_mtls_profile": "corp"},
    ],
)
def test_guarded_fields_unset_or_on_an_http_route_are_no_error(labels: dict[str, str]) -> None:
    assert not parse(labels).errors


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"proxy.b6.prot": "2224:22"}, 'label proxy.b6.prot="2224:22": unknown field "prot"'),
        ({"proxy.a.port": "3000", "proxy.a.porrt": "1"}, 'did you mean "port"?'),
        ({"proxy.a.scheme": "http", "proxy.a.helthcheck.path": "/"}, "unknown field"),
        ({"proxy.a.port": "1:2", "proxy.a.healthcheck.pth": "/"}, "unknown field"),
        ({"proxy.a.port": "1:2", "proxy.a.load_balance.links": "x"}, "unknown field"),
    ],
)
def test_unknown_fields_are_errors_whatever_the_routes_kind(
    labels: dict[str, str], message: str
) -> None:
    (msg,) = errors(labels)
    assert message in msg


def test_a_misspelt_container_label_gets_a_hint() -> None:
    (msg,) = errors({"proxy.alias": "ssh", "proxy.ssh.port": "2222:22"})
    assert "did you mean the container label aliases?" in msg


@pytest.mark.parametrize(
    ("labels", "want"),
    [
        ({"proxy.a.scheme": "tcp", "proxy.a.port": "0:22"}, [("a", None, 22)]),
        ({"proxy.a.scheme": "udp", "proxy.a.port": "0:53"}, [("a", None, 53)]),
        ({"proxy.a.port": "0:22"}, []),  # no scheme, no LISTEN port: GoDoxy's HTTP route
    ],
)
def test_listen_port_zero_picks_a_free_port(
    labels: dict[str, str], want: list[tuple[str, None, int]]
) -> None:
    assert [(r[0], r[3], r[5]) for r in routes(labels)] == want


@pytest.mark.parametrize(
    "labels",
    [
        {"proxy.a.port": "1:2", "proxy.a.loadBalance.mode": "leastconn"},
        {"proxy.a.port": "1:2", "proxy.a.HealthCheck.Interval": "2s"},
        {"proxy.a.port": "1:2", "proxy.a.relayProxyProtocolHeader": "false"},
        {"proxy.a.port": "1:2", "proxy.a.udp-timeout": "9s"},
    ],
)
def test_field_names_match_as_godoxy_matches_them(labels: dict[str, str]) -> None:
    assert len(routes(labels)) == 1


def test_compose_mode_default_alias_is_the_service() -> None:
    ctx = ParseContext(mode="compose")
    result = parse({**COMPOSE, "proxy.#1.scheme": "tcp", "proxy.#1.port": "2222:22"}, ctx,
                   name="game", networks={"default": ""})  # fmt: skip
    assert [(r.alias, r.target) for r in result.routes] == [("game", ("game", 22))]


def test_a_clash_is_reported_without_its_consequences() -> None:
    labels = {
        "proxy.aliases": "ssh,dns",
        "proxy.ports": "2222:22, 5353:53",
        "proxy.schemes": "tcp, udp",
        "proxy.ssh.port": "2200:22",
    }
    (msg,) = errors(labels)  # not also "needs a port" for the port the clash dropped
    assert "proxy.ports[#1]" in msg and "proxy.ssh.port" in msg


def test_shortcut_lists_split_on_commas_and_white_space_dropping_empty_items() -> None:
    labels = {
        "proxy.aliases": "ssh dns",
        "proxy.ports": "2222:22,, 5353:53",
        "proxy.schemes": "tcp udp",
    }
    assert [(r[0], r[1], r[3]) for r in routes(labels)] == [
        ("ssh", "tcp", 2222),
        ("dns", "udp", 5353),
    ]
