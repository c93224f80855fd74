"""Server-name patterns and the name table: parsing, normalisation, the GoDoxy alias rule,
most-specific-wins, conflicts (the older owner keeps a name) and overlap reports."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from godoxy_streams.server_names import (
    DEFAULT,
    NamePattern,
    NameTable,
    alias_pattern,
    overlap,
    parse_pattern,
    patterns_text,
    server_name,
    sni_pattern,
)


@pytest.mark.parametrize(
    ("text", "kind", "key"),
    [
        ("*", "default", ""),
        (" * ", "default", ""),
        ("db.example.com", "exact", "db.example.com"),
        ("DB.Example.COM.", "exact", "db.example.com"),
        ("*.example.com", "wildcard", "example.com"),
        ("*.Example.com.", "wildcard", "example.com"),
        ("*.com", "wildcard", "com"),
        ("site2", "exact", "site2"),  # an sni value is always a name, never the alias rule
        ("bücher.example", "exact", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "exact", "xn--bcher-kva.example"),
        ("_acme.example.com", "exact", "_acme.example.com"),
    ],
)
def test_sni_patterns(text: str, kind: str, key: str) -> None:
    assert sni_pattern(text) == NamePattern(kind, key)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        "",
        ".",
        "*.",
        "**",
        "a.*",
        "*.*.example.com",
        "f*o.example.com",
        "a..b",
        "-a.example",
        "a b.example",
        "x" * 64 + ".example",
        ("a." * 127) + "com",
        "1.2.3.4",
        "::1",
        "*.1.2.3.4",
    ],
)
def test_bad_sni_patterns(text: str) -> None:
    with pytest.raises(ValueError):
        sni_pattern(text)


@pytest.mark.parametrize(
    ("alias", "pattern"),
    [
        ("site2", NamePattern("label", "site2")),
        ("Site2", NamePattern("label", "site2")),
        ("site2.example.test", NamePattern("exact", "site2.example.test")),
        ("mqtt.", NamePattern("label", "mqtt")),
    ],
)
def test_alias_patterns(alias: str, pattern: NamePattern) -> None:
    assert alias_pattern(alias) == pattern


@pytest.mark.parametrize(
    "pattern",
    [
        DEFAULT,
        NamePattern("exact", "a.example.com"),
        NamePattern("wildcard", "example.com"),
        NamePattern("label", "site2"),
        NamePattern("exact", "site2"),
    ],
)
def test_written_patterns_read_back(pattern: NamePattern) -> None:
    assert parse_pattern(str(pattern)) == pattern


@pytest.mark.parametrize("text", ["a.b.*", ".*", "*.*", "x y.*", ""])
def test_bad_written_patterns(text: str) -> None:
    with pytest.raises(ValueError):
        parse_pattern(text)


def test_patterns_text_is_sorted_without_repeats() -> None:
    names = [sni_pattern("b.test"), sni_pattern("*"), alias_pattern("site2"), sni_pattern("B.test")]
    assert patterns_text(names) == ("*", "b.test", "site2.*")


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        (None, None),
        ("", None),
        (".", None),
        ("A.Example.COM", "a.example.com"),
        ("a.example.com.", "a.example.com"),
        (b"A.example", "a.example"),
        ("BÜCHER.example", "xn--bcher-kva.example"),
        ("bücher.example".encode(), "xn--bcher-kva.example"),
        (b"\xff\xfe", None),
        ("a\u2028b" * 40, None),  # IDNA refuses it: matches only the default
        ("x" * 70 + "é", None),
    ],
)
def test_server_name_normalisation(raw: str | bytes | None, name: str | None) -> None:
    assert server_name(raw) == name


@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_server_name_never_raises(raw: str | bytes) -> None:
    result = server_name(raw)
    assert result is None or (result.isascii() and not result.endswith("."))


TABLE = NameTable(
    [
        ("exact", [sni_pattern("a.example.com")]),
        ("wild", [sni_pattern("*.example.com")]),
        ("label", [alias_pattern("a"), alias_pattern("site2")]),
        ("idn", [sni_pattern("bücher.example")]),
        ("default", [DEFAULT]),
    ]
)


@pytest.mark.parametrize(
    ("name", "owner", "pattern"),
    [
        ("a.example.com", "exact", "a.example.com"),
        ("A.EXAMPLE.COM.", "exact", "a.example.com"),
        ("b.example.com", "wild", "*.example.com"),  # a wildcard beats a label rule
        ("site2.example.com", "wild", "*.example.com"),
        ("site2.example.test", "label", "site2.*"),
        ("site2", "label", "site2.*"),
        ("a.other.test", "label", "a.*"),
        ("x.a.example.com", "default", "*"),  # a wildcard is one label deep
        ("example.com", "default", "*"),
        ("site20.example.test", "default", "*"),
        ("xn--bcher-kva.example", "idn", "bücher.example"),
        ("BÜCHER.example.", "idn", "bücher.example"),
        (None, "default", "*"),
        ("", "default", "*"),
    ],
)
def test_most_specific_match(name: str | None, owner: str, pattern: str) -> None:
    hit = TABLE.lookup(server_name(name))
    assert hit is not None
    assert hit[0] == owner
    assert str(hit[1]) == str(NamePattern(hit[1].kind, hit[1].key))
    assert hit[1] == (
        alias_pattern(pattern[:-2]) if pattern.endswith(".*") else sni_pattern(pattern)
    )
    assert hit[1].matches(server_name(name))


def test_without_a_default_nothing_matches() -> None:
    table = NameTable([("a", [sni_pattern("a.test")])])
    assert table.match("b.test") is None
    assert table.match(None) is None
    assert table.match("a.test") == "a"
    assert len(table) == 1


def test_conflicts_keep_the_older_owner() -> None:
    table = NameTable(
        [
            ("old", [sni_pattern("a.test"), sni_pattern("*.x.test"), alias_pattern("s"), DEFAULT]),
            ("new", [sni_pattern("A.test."), sni_pattern("b.test"), sni_pattern("*.x.test")]),
            ("newer", [alias_pattern("s"), DEFAULT, sni_pattern("q.x.test")]),
        ]
    )
    found = [(str(c.pattern), c.owner, c.other) for c in table.conflicts]
    assert found == [
        ("a.test", "old", "new"),
        ("*.x.test", "old", "new"),
        ("s.*", "old", "newer"),
        ("*", "old", "newer"),
    ]
    assert table.match("a.test") == "old"
    assert table.match("b.test") == "new"  # the rest of a conflicting route still serves
    assert table.match("q.x.test") == "newer"  # exact inside a wildcard: no conflict
    assert table.match("s.anything") == "old"


def test_a_route_naming_a_pattern_twice_is_no_conflict() -> None:
    table = NameTable([("r", [sni_pattern("a.test"), sni_pattern("A.TEST")])])
    assert table.conflicts == []


def test_overlap_names_the_shared_pattern() -> None:
    ours = [sni_pattern("a.test"), sni_pattern("*.b.test"), DEFAULT]
    assert overlap(ours, [sni_pattern("c.test")]) is None
    assert overlap(ours, [sni_pattern("x.b.test"), alias_pattern("a")]) is None
    assert overlap(ours, [sni_pattern("*.B.test")]) == sni_pattern("*.b.test")
    assert overlap(ours, [DEFAULT]) == DEFAULT
    assert overlap([alias_pattern("site2.example")], [sni_pattern("site2.example")]) is not None


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        (DEFAULT, None, True),
        (sni_pattern("a.test"), None, False),
        (sni_pattern("*.test"), ".test", False),
        (alias_pattern("a"), "a", True),
        (alias_pattern("a"), "ab.test", False),
    ],
)
def test_pattern_matches(pattern: NamePattern, name: str | None, expected: bool) -> None:
    assert pattern.matches(name) is expected
