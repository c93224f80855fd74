"""The steps of ``expand`` (labels/grammar.py) and of precedence (labels/precedence.py), each on
its own, table-driven."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from godoxy_streams.labels.grammar import (
    Addressed,
    Candidates,
    Expansion,
    Indexer,
    Shortcut,
    add_addressed,
    add_shortcuts,
    address,
    alias_list,
    read_container_label,
    targets_of,
)
from godoxy_streams.labels.precedence import FieldValue, Form, pick


@pytest.mark.parametrize(
    ("name", "raw", "check"),
    [
        ("aliases", "SSH, dns ssh", lambda out, sc: out.aliases == ["ssh", "dns"]),
        ("exclude", "yes", lambda out, sc: out.exclude),
        (
            "exclude",
            "maybe",
            lambda out, sc: "expected a boolean" in out.container_errors[0].message,
        ),
        ("network", " back ", lambda out, sc: out.network and out.network.text == "back"),
        ("ports", "1:2,3:4", lambda out, sc: sc == [Shortcut("port", "proxy.ports", "1:2,3:4")]),
        ("protocols", "udp", lambda out, sc: sc[0].field == "scheme"),
        ("idle_timeout", "1h", lambda out, sc: "proxy.idle_timeout" in out.notes[0]),
        ("no_tls_verifies", "true", lambda out, sc: "HTTP routes only" in out.notes[0]),
        ("tls_terminations", "true", lambda out, sc: sc[0].field == "tls_termination"),
        ("aliases", "", lambda out, sc: not out.declared_aliases),
        ("exclude", " ", lambda out, sc: not out.exclude and not out.container_errors),
        ("network", "", lambda out, sc: out.network is None),
    ],
)
def test_read_container_label(
    name: str, raw: str, check: Callable[[Expansion, list[Shortcut]], bool]
) -> None:
    out, shortcuts = Expansion(), list[Shortcut]()
    assert read_container_label(name, f"proxy.{name}", raw, "web", out, shortcuts)
    assert check(out, shortcuts)


def test_a_name_that_is_no_container_label_is_left_to_addressing() -> None:
    assert not read_container_label("ssh", "proxy.ssh", "port: 1:2", "web", Expansion(), [])


@pytest.mark.parametrize(
    ("rest", "want"),
    [
        ("ssh.port", ("ssh", "named", "port", 2)),
        ("SSH.Health-Check.Interval", ("ssh", "named", "health_check.interval", 3)),
        ("#2.port", ("#2", "index", "port", 2)),
        ("$1.port", ("#1", "index", "port", 2)),
        ("*.scheme", ("*", "wildcard", "scheme", 2)),
        ("*", ("*", "wildcard", "", 1)),
        ("app", ("app", "named", "", 1)),
        ("app.example.com", ("app", "named", "example.com", 3)),
    ],
)
def test_address(rest: str, want: tuple[str, str, str, int]) -> None:
    item = address(f"proxy.{rest}", rest, "v")
    assert item is not None
    assert (item.target, item.form, item.path, item.depth) == want


def test_address_without_a_head_is_none() -> None:
    assert address("proxy..port", ".port", "v") is None


def addressed(target: str, form: Form, path: str = "port", raw: str = "1:2") -> Addressed:
    return Addressed(target, form, path, f"proxy.{target}.{path}", raw, 2)


PORTS = Shortcut("port", "proxy.ports", "2222:22")


@pytest.mark.parametrize(
    ("declared", "items", "shortcuts", "want"),
    [
        ([], [], [], ["web"]),
        ([], [addressed("*", "wildcard")], [], ["web"]),
        ([], [addressed("#1", "index")], [], ["web"]),
        ([], [], [PORTS], ["web"]),
        ([], [addressed("b", "named"), addressed("a", "named")], [], ["b", "a"]),
        ([], [addressed("b", "named"), addressed("#1", "index")], [], ["web", "b"]),
        ([], [addressed("b", "named")], [PORTS], ["web", "b"]),
        ([], [addressed("web", "named"), addressed("#1", "index")], [], ["web"]),
        (["a"], [addressed("b", "named"), addressed("a", "named")], [], ["a", "b"]),
        (["a", "b"], [addressed("#1", "index")], [PORTS], ["a", "b"]),
    ],
)
def test_alias_list(
    declared: list[str], items: list[Addressed], shortcuts: list[Shortcut], want: list[str]
) -> None:
    assert alias_list(declared, items, shortcuts, "Web") == want


@pytest.mark.parametrize(
    ("declared", "target", "want", "error"),
    [
        (["a", "b"], "#1", "a", None),
        (["a", "b"], "#2", "b", None),
        (["a", "b"], "#3", None, "#3 is out of range: proxy.aliases has 2 alias(es)"),
        (["a"], "#0", None, "#0 is out of range"),
        ([], "#1", "web", None),
        ([], "#2", None, 'without proxy.aliases only #1 (the default alias "web") is numbered'),
    ],
)
def test_indexer(declared: list[str], target: str, want: str | None, error: str | None) -> None:
    out = Expansion(aliases=list(declared), declared_aliases=bool(declared))
    indexer = Indexer(out, "proxy", "web", declared, "web")
    assert indexer.resolve(target, f"proxy.{target}.port", "1:2") == want
    if error is None:
        assert not out.stray_errors
    else:
        assert error in out.stray_errors[0].message


def test_targets_of() -> None:
    out = Expansion(aliases=["a", "b"], declared_aliases=True)
    indexer = Indexer(out, "proxy", "web", ["a", "b"], "web")
    assert targets_of(addressed("*", "wildcard"), ["a", "b", "c"], indexer) == ["a", "b", "c"]
    assert targets_of(addressed("#2", "index"), ["a", "b"], indexer) == ["b"]
    assert targets_of(addressed("#9", "index"), ["a", "b"], indexer) == []
    assert targets_of(addressed("c", "named"), ["a", "b", "c"], indexer) == ["c"]


@pytest.mark.parametrize(
    ("item", "want"),
    [
        (addressed("a", "named", "port", "1:2"), {"port": ("1:2", 3)}),
        (addressed("a", "named", "", "port: 1:2\nscheme: udp"), {"port": ("1:2", 2)}),
        (addressed("a", "named", "acl", "allow: [10.0.0.0/8]"), {"acl.allow": ("10.0.0.0/8", 2)}),
    ],
)
def test_add_addressed(item: Addressed, want: dict[str, tuple[str, int]]) -> None:
    candidates = Candidates(["a"])
    add_addressed(item, ["a"], candidates, "web", Expansion())
    got = {name: (vals[0].text, vals[0].depth) for name, vals in candidates.by_alias["a"].items()}
    assert {k: got[k] for k in want} == want


def test_add_addressed_block_that_is_no_mapping_is_a_route_error() -> None:
    out = Expansion()
    add_addressed(addressed("a", "named", "", "text"), ["a"], Candidates(["a"]), "web", out)
    assert "expected a YAML mapping of fields" in out.route_errors["a"][0].message


def test_add_shortcuts_split_as_godoxy_does() -> None:
    out = Expansion(aliases=["a", "b"], declared_aliases=True)
    indexer = Indexer(out, "proxy", "web", ["a", "b"], "web")
    candidates = Candidates(["a", "b"])
    add_shortcuts([Shortcut("port", "proxy.ports", "1:2, ,3:4 5:6")], candidates, indexer)
    assert [v.label for v in candidates.by_alias["a"]["port"]] == ["proxy.ports[#1]"]
    assert [v.text for v in candidates.by_alias["b"]["port"]] == ["3:4"]  # empties dropped
    assert [e.message[:19] for e in out.stray_errors] == ["#3 is out of range:"]


def value(text: str, form: Form, depth: int = 2, label: str = "") -> FieldValue:
    return FieldValue(text, label or f"{form}:{text}", text, form, depth)


@pytest.mark.parametrize(
    ("values", "want"),
    [
        ([value("1", "named")], "1"),
        ([value("1", "named"), value("2", "wildcard")], "1"),
        ([value("2", "wildcard"), value("1", "index")], "1"),
        ([value("1", "named", 1), value("2", "named", 2)], "2"),
        ([value("1", "named"), value("1", "index")], "1"),
        ([value("1", "shortcut", 0)], "1"),
        ([value("1", "named"), value("2", "index")], "ambiguous: index:2"),
        ([value("1", "wildcard", 1), value("2", "wildcard", 1)], "ambiguous: wildcard:2"),
        ([value("1", "shortcut", 0), value("2", "named")], "sets the same field as named:2"),
    ],
)
def test_pick(values: list[FieldValue], want: str) -> None:
    got = pick(values)
    if isinstance(got, FieldValue):
        assert got.text == want
    else:
        assert got[0].startswith(want)
