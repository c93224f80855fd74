"""labels.md "Container-level labels": GoDoxy's sleep/wake labels, read into ``IdleConfig``
(names, defaults, meanings), errors per container naming the label and value, and the routes
of a sleeping container (kept, with no target)."""

from __future__ import annotations

import pytest

from godoxy_streams.labels import ParseContext
from godoxy_streams.labels.idle import Dependency, IdleConfig, read_idle

from .labelkit import parse

PORT = {"proxy.a.port": "2222:22"}


def config(labels: dict[str, str]) -> IdleConfig | None:
    result = read_idle(labels, "proxy", "web")
    assert not result.errors, [str(e) for e in result.errors]
    return result.config


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({}, None),
        ({"proxy.idle_timeout": "15m"}, IdleConfig(900.0)),
        ({"proxy.idle_timeout": "0"}, None),  # GoDoxy: zero is off
        ({"proxy.idle_timeout": ""}, None),  # an empty value is no label
        ({"proxy.idle_timeout": "1h30s", "proxy.wake_timeout": "1m"}, IdleConfig(3630.0, 60.0)),
        (
            {"proxy.idle_timeout": "1s", "proxy.stop_method": "PAUSE", "proxy.stop_timeout": "5s"},
            IdleConfig(1.0, stop_method="pause", stop_timeout=5.0),
        ),
        (
            {"proxy.idle_timeout": "1s", "proxy.stop_signal": "int"},
            IdleConfig(1.0, stop_signal="SIGINT"),
        ),
        (
            {"proxy.idle_timeout": "1s", "proxy.stop_signal": "SIGHUP"},
            IdleConfig(1.0, stop_signal="SIGHUP"),
        ),
        ({"PROXY.Idle-Timeout": "2s"}, IdleConfig(2.0)),  # case and -/_ as every field
        (
            {"proxy.idle_timeout": "1s", "proxy.depends_on": "db:service_healthy, cache"},
            IdleConfig(1.0, depends_on=(Dependency("db", True), Dependency("cache"))),
        ),
        (
            {"proxy.idle_timeout": "1s", "proxy.depends_on": "- redis:service_healthy\n- pg"},
            IdleConfig(1.0, depends_on=(Dependency("redis", True), Dependency("pg"))),
        ),
        (  # compose's own label is the default, with its ":restart" part
            {
                "proxy.idle_timeout": "1s",
                "com.docker.compose.depends_on": "db:service_healthy:false,w:service_started:true",
            },
            IdleConfig(1.0, depends_on=(Dependency("db", True), Dependency("w"))),
        ),
        (  # the label beats compose's
            {
                "proxy.idle_timeout": "1s",
                "proxy.depends_on": "cache",
                "com.docker.compose.depends_on": "db:service_started:false",
            },
            IdleConfig(1.0, depends_on=(Dependency("cache"),)),
        ),
    ],
)
def test_config(labels: dict[str, str], expected: IdleConfig | None) -> None:
    assert config(labels) == expected


def test_defaults_are_godoxys() -> None:
    got = config({"proxy.idle_timeout": "15m"})
    assert got is not None
    assert (got.wake_timeout, got.stop_method, got.stop_timeout, got.stop_signal) == (
        30.0,
        "stop",
        60.0,
        None,
    )


@pytest.mark.parametrize(
    ("label", "value", "expected"),
    [
        ("idle_timeout", "15x", "expected a duration"),
        ("idle_timeout", "-1s", "expected a duration"),
        ("wake_timeout", "0", "greater than zero"),
        ("stop_timeout", "soon", "expected a duration"),
        ("stop_method", "nap", "expected one of stop, pause, kill"),
        ("stop_signal", "USR1", "expected one of SIGINT, SIGTERM, SIGKILL, SIGQUIT, SIGHUP"),
        ("depends_on", "db:service_completed_successfully", "condition must be"),
        ("depends_on", ":service_healthy", "expected NAME"),
    ],
)
def test_errors_name_container_label_and_value(label: str, value: str, expected: str) -> None:
    labels = {**PORT, "proxy.idle_timeout": "1s", f"proxy.{label}": value}
    result = parse(labels)
    assert result.routes == () and result.idle is None  # a container-level error: no route
    (error,) = result.errors
    assert str(error).startswith(f'container "web": label proxy.{label}="{value}": ')
    assert expected in error.message


def test_compose_conditions_it_cannot_wake_are_noted_not_errors() -> None:
    labels = {
        **PORT,
        "proxy.idle_timeout": "1s",
        "com.docker.compose.depends_on": "init:service_completed_successfully:false,db::false",
    }
    result = parse(labels)
    assert not result.errors and result.idle is not None
    assert result.idle.depends_on == (Dependency("db"),)
    assert result.notes == (
        "web: dependency init (service_completed_successfully) is not woken with it",
    )


def test_labels_without_idle_timeout_are_noted() -> None:
    result = parse({**PORT, "proxy.wake_timeout": "10s", "proxy.stop_method": "pause"})
    assert result.idle is None and not result.errors and len(result.routes) == 1
    assert result.notes == (
        "web: label proxy.stop_method has no effect without proxy.idle_timeout: ignored",
        "web: label proxy.wake_timeout has no effect without proxy.idle_timeout: ignored",
    )


def test_used_labels_are_not_noted_as_ignored() -> None:
    result = parse({**PORT, "proxy.idle_timeout": "1s", "proxy.stop_method": "pause"})
    assert result.notes == () and result.idle == IdleConfig(1.0, stop_method="pause")


@pytest.mark.parametrize("state", ["exited", "created", "paused"])
def test_a_sleeping_container_keeps_its_routes_without_a_target(state: str) -> None:
    labels = {**PORT, "proxy.idle_timeout": "1s", "proxy.b.scheme": "udp", "proxy.b.port": "53"}
    asleep = parse(labels, state=state, networks={"bridge": ""}, ports=["53/udp"])
    awake = parse(labels, ports=["53/udp"])
    assert not asleep.errors and asleep.idle == awake.idle
    assert [(r.target_host, r.target_port) for r in asleep.routes] == [("", 22), ("", 53)]
    assert [r.listener_part() for r in asleep.routes] == [r.listener_part() for r in awake.routes]


def test_a_sleeping_container_of_a_remote_engine_has_no_published_port_yet() -> None:
    labels = {**PORT, "proxy.idle_timeout": "1s"}
    ctx = ParseContext(remote_host="192.0.2.7")
    (route,) = parse(labels, ctx, state="exited").routes
    assert (route.target_host, route.target_port) == ("", 22)
    assert parse(labels, ctx).errors  # running and unpublished: the usual error


def test_a_stopped_container_without_sleep_wake_is_unchanged() -> None:
    assert parse(PORT, state="exited", networks={"bridge": ""}).errors


def test_swarm_services_do_not_sleep() -> None:
    result = parse({**PORT, "proxy.idle_timeout": "1s"}, node_address="192.0.2.9")
    assert result.idle is None and result.routes
    assert result.notes == ("web: sleep/wake is not supported for Swarm services",)
