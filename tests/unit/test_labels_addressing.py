"""docs/labels.md: which containers and routes, container-level labels, the four addressing forms,
shortcuts and precedence."""

from __future__ import annotations

import pytest

from godoxy_streams.labels import ParseContext

from .labelkit import IP, errors, parse, routes


def test_container_without_proxy_labels_is_ignored_silently() -> None:
    result = parse({"traefik.enable": "true", "com.example": "x"})
    assert result.routes == () and result.errors == () and result.notes == ()
    assert not result.labelled


def test_readme_example_ssh() -> None:
    assert routes({"proxy.aliases": "ssh", "proxy.ssh.port": "2222:22"}) == [
        ("ssh", "tcp", "0.0.0.0", 2222, IP, 22)
    ]


@pytest.mark.parametrize(
    "labels",
    [
        {"proxy.app.port": "3000"},
        {"proxy.app.scheme": "http", "proxy.app.port": "3000"},
        {"proxy.app.scheme": "https"},
        {"proxy.app.middlewares.redirect.to": "x"},
    ],
)
def test_http_routes_are_ignored_with_a_note(labels: dict[str, str]) -> None:
    result = parse(labels)
    assert result.routes == () and result.errors == ()
    assert any("not a stream route" in n for n in result.notes)


def test_http_only_labels_on_a_stream_route_are_noted_not_errors() -> None:
    result = parse({"proxy.app.port": "2222:22", "proxy.app.homepage.name": "x"})
    assert len(result.routes) == 1 and not result.errors
    assert any("proxy.app.homepage.name" in n and "HTTP" in n for n in result.notes)


def test_idle_watcher_labels_are_noted() -> None:
    result = parse({"proxy.idle_timeout": "1h", "proxy.app.port": "2222:22"})
    assert len(result.routes) == 1
    assert any("proxy.idle_timeout" in n for n in result.notes)


def test_aliases_split_on_commas_and_whitespace_lowercased() -> None:
    labels = {"proxy.aliases": " SSH, dns  web,,", "proxy.*.port": "1000:22"}
    assert [r[0] for r in routes(labels)] == ["ssh", "dns", "web"]


def test_aliases_named_only_in_labels_become_routes() -> None:
    labels = {"proxy.aliases": "a", "proxy.a.port": "1001:1", "proxy.b.port": "1002:2"}
    assert [(r[0], r[3]) for r in routes(labels)] == [("a", 1001), ("b", 1002)]


def test_default_alias_is_compose_service_else_container_name() -> None:
    compose = {"com.docker.compose.service": "Game", "com.docker.compose.project": "p"}
    assert routes({**compose, "proxy.*.port": "1:2"}, name="p-game-1")[0][0] == "game"
    assert routes({"proxy.*.port": "1:2"}, name="Plain")[0][0] == "plain"


@pytest.mark.parametrize("value", ["true", "1", "yes", "on", "TRUE"])
def test_exclude_true_means_no_routes(value: str) -> None:
    result = parse({"proxy.exclude": value, "proxy.a.port": "1:2"})
    assert result.excluded and result.routes == () and result.errors == ()


@pytest.mark.parametrize("value", ["false", "0", "no", "off"])
def test_exclude_false_keeps_routes(value: str) -> None:
    assert len(routes({"proxy.exclude": value, "proxy.a.port": "1:2"})) == 1


def test_exclude_invalid_is_a_container_error() -> None:
    result = parse({"proxy.exclude": "maybe", "proxy.a.port": "1:2", "proxy.b.port": "3:4"})
    assert result.routes == ()
    assert [str(e) for e in result.errors] == [
        'container "web": label proxy.exclude="maybe": '
        "expected a boolean: true/false/1/0/yes/no/on/off"
    ]


def test_network_label_chooses_the_address() -> None:
    nets = {"front": "10.1.0.2", "back": "10.2.0.2"}
    assert routes({"proxy.network": "back", "proxy.a.port": "1:2"}, networks=nets)[0][4] == (
        "10.2.0.2"
    )


def test_network_label_tries_the_compose_project_prefix() -> None:
    labels = {"com.docker.compose.project": "shop", "proxy.network": "db", "proxy.a.port": "1:2"}
    nets = {"shop_db": "10.3.0.2", "bridge": "172.17.0.9"}
    assert routes(labels, networks=nets)[0][4] == "10.3.0.2"


def test_unknown_network_is_a_container_error_listing_networks() -> None:
    msgs = errors({"proxy.network": "nope", "proxy.a.port": "1:2"}, networks={"x": "1", "y": "2"})
    assert msgs == [
        'container "web": label proxy.network="nope": '
        'network "nope" is not one of the container\'s networks (x, y)'
    ]


def test_index_addressing_hash_and_dollar() -> None:
    labels = {"proxy.aliases": "a,b", "proxy.#1.port": "1001:1", "proxy.$2.port": "1002:2"}
    assert [(r[0], r[3]) for r in routes(labels)] == [("a", 1001), ("b", 1002)]


@pytest.mark.parametrize(
    ("labels", "needle"),
    [
        ({"proxy.aliases": "a", "proxy.#0.port": "1:2"}, "#0 is out of range"),
        ({"proxy.aliases": "a", "proxy.#2.port": "1:2"}, "#2 is out of range"),
        ({"proxy.#2.port": "1:2"}, "#2 is out of range: without proxy.aliases only #1"),
    ],
)
def test_bad_index_is_an_error_for_that_label(labels: dict[str, str], needle: str) -> None:
    result = parse(labels)
    assert any(needle in str(e) for e in result.errors), result.errors


def test_bad_index_does_not_break_other_routes() -> None:
    result = parse({"proxy.aliases": "a", "proxy.a.port": "1:2", "proxy.#3.port": "3:4"})
    assert [r.alias for r in result.routes] == ["a"] and len(result.errors) == 1


def test_wildcard_applies_to_every_alias() -> None:
    labels = {
        "proxy.aliases": "a,b",
        "proxy.*.scheme": "udp",
        "proxy.a.port": "1:2",
        "proxy.b.port": "3:4",
    }
    assert [(r[0], r[1]) for r in routes(labels)] == [("a", "udp"), ("b", "udp")]


def test_yaml_block_forms() -> None:
    assert routes({"proxy.app": "scheme: tcp\nport: 2222:22\nbind: 127.0.0.1"}) == [
        ("app", "tcp", "127.0.0.1", 2222, IP, 22)
    ]
    assert routes({"proxy.aliases": "x", "proxy.#1": "port: 1:2"})[0][3] == 1
    assert routes({"proxy.aliases": "x", "proxy.*": "port: 5:6"})[0][3] == 5


def test_yaml_block_that_is_not_a_mapping_is_an_error() -> None:
    msgs = errors({"proxy.app": "just text"})
    assert msgs and "expected a YAML mapping of fields" in msgs[0]


def test_yaml_tabs_are_read_as_spaces() -> None:
    assert routes({"proxy.app": "healthcheck:\n\tinterval: 2s\nport: 1:2"})[0][3] == 1


def test_scalar_shortcuts_apply_item_i_to_alias_i() -> None:
    labels = {
        "proxy.aliases": "ssh,dns",
        "proxy.ports": "2222:22, 5353:53",
        "proxy.schemes": "tcp, udp",
    }
    assert routes(labels) == [
        ("ssh", "tcp", "0.0.0.0", 2222, IP, 22),
        ("dns", "udp", "0.0.0.0", 5353, IP, 53),
    ]


@pytest.mark.parametrize("name", ["protos", "protocols", "binds", "hosts"])
def test_other_shortcut_names_are_known(name: str) -> None:
    value = {"protos": "udp", "protocols": "udp", "binds": "127.0.0.1", "hosts": IP}[name]
    labels = {"proxy.aliases": "a", "proxy.#1.port": "1:2", f"proxy.{name}": value}
    assert len(routes(labels)) == 1


def test_shortcut_proxy_protocol_headers() -> None:
    labels = {"proxy.aliases": "a", "proxy.a.port": "1:2", "proxy.proxy_protocol_headers": "true"}
    assert parse(labels).routes[0].proxy_protocol == "v2"


def test_shortcut_and_full_label_on_one_field_is_an_error_naming_both() -> None:
    labels = {
        "proxy.aliases": "ssh,dns",
        "proxy.ports": "2222:22, 5353:53",
        "proxy.ssh.port": "2200:22",
    }
    result = parse(labels)
    assert [r.alias for r in result.routes] == ["dns"]
    (message,) = [str(e) for e in result.errors]
    assert "proxy.ports[#1]" in message and "proxy.ssh.port" in message


def test_per_alias_beats_wildcard() -> None:
    labels = {"proxy.a.port": "8080:80", "proxy.*.port": "5555:80"}
    assert routes(labels)[0][3] == 8080
    labels = {"proxy.aliases": "a", "proxy.#1.port": "8080:80", "proxy.*.port": "5555:80"}
    assert routes(labels)[0][3] == 8080


def test_dotted_label_beats_yaml_block_at_same_level() -> None:
    labels = {"proxy.a": "port: 1:2\nudp_timeout: 9s", "proxy.a.port": "3:4"}
    result = parse(labels)
    assert result.routes[0].listen_port == 3
    labels = {
        "proxy.a.healthcheck": "interval: 2s\nretries: 5",
        "proxy.a.healthcheck.interval": "3s",
        "proxy.a.port": "1:2",
    }
    health = parse(labels).routes[0].healthcheck
    assert (health.interval, health.retries) == (3.0, 5)


def test_named_and_index_disagreeing_is_ambiguous() -> None:
    result = parse({"proxy.aliases": "a", "proxy.a.port": "1:2", "proxy.#1.port": "3:4"})
    assert result.routes == ()
    assert "ambiguous" in str(result.errors[0]) and "proxy.#1.port" in str(result.errors[0])


def test_named_and_index_agreeing_is_fine() -> None:
    assert len(routes({"proxy.aliases": "a", "proxy.a.port": "1:2", "proxy.#1.port": "1:2"})) == 1


def test_field_names_are_case_and_dash_insensitive() -> None:
    labels = {"proxy.a.PORT": "1:2", "proxy.a.Udp-Timeout": "9s", "proxy.a.scheme": "udp"}
    assert parse(labels).routes[0].udp_timeout == 9.0


def test_unknown_field_gets_a_did_you_mean_hint() -> None:
    assert errors({"proxy.a.port": "1:2", "proxy.a.porrt": "3"}) == [
        'container "web": label proxy.a.porrt="3": unknown field "porrt"; did you mean "port"?'
    ]


def test_namespace_is_configurable() -> None:
    ctx = ParseContext(namespace="streams")
    result = parse({"streams.a.port": "1:2", "proxy.b.port": "3:4"}, ctx)
    assert [r.alias for r in result.routes] == ["a"]
