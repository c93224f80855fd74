"""Compose files: interpolation as compose does it, labels from both places, service facts."""

from __future__ import annotations

from pathlib import Path

import pytest

from godoxy_streams.containers import PortFact
from godoxy_streams.errors import ConfigError
from godoxy_streams.labels import ParseContext, parse_container
from godoxy_streams.sources.compose import interpolate, load_compose

ENV = {"A": "1", "EMPTY": ""}


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("$A", "1"),
        ("${A}", "1"),
        ("x${A}y", "x1y"),
        ("$$A", "$A"),
        ("$${A}", "${A}"),
        ("${MISSING}", ""),
        ("${MISSING:-d}", "d"),
        ("${EMPTY:-d}", "d"),
        ("${EMPTY-d}", ""),
        ("${MISSING-d}", "d"),
        ("${A:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("cost: $$5", "cost: $5"),
    ],
)
def test_interpolation(text: str, want: str) -> None:
    assert interpolate(text, ENV) == want


def test_required_variable() -> None:
    with pytest.raises(ConfigError, match="B is required: set B"):
        interpolate("${B:?set B}", ENV)


def test_load_compose(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PORT=2222\n")
    path = tmp_path / "compose.yml"
    path.write_text(
        """
name: shop
services:
  ssh:
    labels: ["proxy.ssh.port=${PORT}:22", "x=y"]
    expose: ["22"]
    deploy: {labels: {proxy.aliases: ssh, x: z}}
    networks: [back]
  dns:
    network_mode: host
    ports: ["127.0.0.1:5353:53/udp", {target: 80, published: 8080}]
"""
    )
    ssh, dns = load_compose(path, env={})
    assert ssh.labels["proxy.ssh.port"] == "2222:22" and ssh.labels["proxy.aliases"] == "ssh"
    assert ssh.labels["x"] == "y"  # service labels beat deploy labels
    assert (ssh.compose_project, ssh.compose_service, ssh.name) == ("shop", "ssh", "ssh")
    assert ssh.networks == {"back": ""} and ssh.ports == (PortFact(22, "tcp"),)
    assert dns.host_network
    assert dns.ports == (PortFact(53, "udp", 5353), PortFact(80, "tcp", 8080))


def test_container_name_is_the_default_alias(tmp_path: Path) -> None:
    """GoDoxy's wiki examples carry no proxy.aliases: the alias is the container's name, the
    explicit one when compose sets it (as the daemon sees it), else the service."""
    path = tmp_path / "compose.yml"
    path.write_text(
        """
services:
  shell:
    container_name: bastion
    labels: {proxy.#1.scheme: tcp, proxy.#1.port: "2222:22"}
  dns:
    labels: {proxy.#1.scheme: udp, proxy.#1.port: "5353:53"}
"""
    )
    ctx = ParseContext(mode="compose")
    routes = [r for info in load_compose(path, env={}) for r in parse_container(info, ctx).routes]
    assert [(r.alias, r.origin.name, r.listen_port) for r in routes] == [
        ("bastion", "bastion", 2222),
        ("dns", "dns", 5353),
    ]


def test_not_a_compose_file(tmp_path: Path) -> None:
    path = tmp_path / "x.yml"
    path.write_text("just: text\n")
    with pytest.raises(ConfigError, match="services"):
        load_compose(path, env={})
