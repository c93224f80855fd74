"""The nftables renderer of the kernel fast path: the rendered text, table-driven.

That the kernel accepts every sample is checked with ``nft -c`` in tests/kernel."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from godoxy_streams.runtime.kernel.routes import (
    KernelRoute,
    KernelTable,
    Socket,
    TableObjects,
    Upstream,
)
from godoxy_streams.runtime.kernel.rules import (
    HASH_BUCKETS,
    bucket_owners,
    defined_objects,
    rate_text,
    render,
    v4_networks,
)

from .kernelkit import SAMPLES, A, B, C, kroute

FRESH_HEAD = ["table inet godoxy_streams", "delete table inet godoxy_streams"]


def lines(table: KernelTable) -> list[str]:
    return [line.strip() for line in render(table).splitlines()]


@pytest.mark.parametrize(
    ("sample", "present", "absent"),
    [
        (
            "tcp",
            [
                "meta l4proto tcp ct mark set 0x47440001 counter name "
                '"r1_conns" dnat ip to 172.24.0.2:7 comment "tcp 0.0.0.0:7007"',
                "meta nfproto ipv4 fib daddr type local meta l4proto . th dport vmap "
                "{ tcp . 7007 : jump r1 }",
                "counter r1_c2u {",
                "counter r1_u2c {",
                "counter r1_refused {",
            ],
            ["reject", "ct timeout", "ct count", "limit"],
        ),
        (
            "udp",
            [
                "policy = { unreplied : 60, replied : 60 }",
                'ct timeout set "udp_60s"',
                'add @r1_count { th dport ct count over 10000 } counter name "r1_refused" drop',
            ],
            ["reject"],
        ),
        (
            "round_robin",
            [
                "meta l4proto tcp ct mark set 0x47440001 counter name "
                '"r1_conns" dnat ip addr . port to numgen inc mod 3 map '
                "{ 0 : 172.24.0.2 . 7, 1 : 172.24.0.3 . 7, 2 : 172.24.0.4 . 8 } "
                'comment "tcp 0.0.0.0:7007"'
            ],
            ["jhash"],
        ),
        ("ip_hash", [f"jhash ip saddr mod {HASH_BUCKETS} seed 0x1 map {{ 0 : "], ["numgen"]),
        (
            "acl",
            [
                "elements = { 10.0.0.0/8, 198.18.0.0/15 }",  # mapped IPv6 entry, sorted
                "elements = { 198.18.0.3/32 }",
                'ip saddr @g_deny4 counter name "r1_refused" reject with tcp reset',
                'ip saddr != @g_allow4 counter name "r1_refused" reject with tcp reset',
                'ip saddr @r1_deny4 counter name "r1_refused" reject with tcp reset',
                'ip saddr != @r1_allow4 counter name "r1_refused" reject with tcp reset',
            ],
            [],
        ),
        # an allow list without an IPv4 entry denies every IPv4 client: an empty set
        ("v6_only_allow", ["set r1_allow4 {", "ip saddr != @r1_allow4 counter"], ["fd00"]),
        (
            "limits",
            [
                "update @r1_rate4_30m_b3_t60 { ip saddr limit rate over 30/minute burst 3 "
                'packets } counter name "r1_refused" reject with tcp reset',
                'add @r1_psrc4 { ip saddr ct count over 5 } counter name "r1_refused" reject',
                'add @r1_count { th dport ct count over 2 } counter name "r1_refused" reject',
                "policy = { established : 90 }",
                'ct timeout set "tcp_idle_90s"',
                "flags dynamic,timeout",
                "timeout 60s",
            ],
            [],
        ),
        (
            "bound",
            [
                "ip daddr . meta l4proto . th dport vmap { 198.18.0.1 . tcp . 7007 : jump r1 }",
                "meta nfproto ipv4 fib daddr type local meta l4proto . th dport vmap "
                "{ tcp . 7008 : jump r2 }",
            ],
            [],
        ),
        (
            "shadowed",
            [
                "ip daddr . meta l4proto . th dport { 192.0.2.2 . udp . 7007 } return",
                "ip saddr @userspace_src4 return",
                "elements = { 198.18.0.9/32 }",
            ],
            ["192.0.2.2 . tcp"],  # no kernel wildcard route on tcp/7007 to shadow
        ),
        # a route without members keeps its counters (its flows drain on), but captures nothing
        ("memberless", ["jump r2", "chain r2 {", "counter r1_conns {"], ["chain r1 {", "jump r1"]),
        ("mixed", ['comment "tcp 198.18.0.1:7008 odd ?name?"', "g_deny4"], ['"name"']),
        ("empty", ['iifname "lo" return', 'iifname "br-*" return'], ["forward", "map"]),
    ],
)
def test_rendered_text(sample: str, present: list[str], absent: list[str]) -> None:
    text = render(SAMPLES[sample])
    body = [line.strip() for line in text.splitlines()]
    assert body[:2] == FRESH_HEAD
    for expected in present:
        assert any(expected in line for line in body), f"{expected!r} missing from:\n{text}"
    for unexpected in absent:
        assert unexpected not in text, f"{unexpected!r} in:\n{text}"


def test_an_acl_set_without_ipv4_entries_is_empty() -> None:
    body = lines(SAMPLES["v6_only_allow"])
    start = body.index("set r1_allow4 {")
    assert body[start : start + 4] == ["set r1_allow4 {", "type ipv4_addr", "flags interval", "}"]


def test_acl_rules_come_in_order_before_limits_and_dnat() -> None:
    table = replace(SAMPLES["acl"], routes=(replace(SAMPLES["acl"].routes[0], rate=1.0),))
    chain = lines(table)
    chain = chain[chain.index("chain r1 {") + 1 :]
    order = ["@g_deny4", "@g_allow4", "@r1_deny4", "@r1_allow4", "limit rate", "dnat"]
    positions = [next(i for i, line in enumerate(chain) if key in line) for key in order]
    assert positions == sorted(positions)


def test_forward_chain_counts_both_directions_by_mark() -> None:
    body = lines(SAMPLES["mixed"])
    assert (
        'elements = { 0x47440001 : "r1_c2u", 0x47440002 : "r2_c2u", 0x47440003 : "r3_c2u" }' in body
    )
    assert (
        "ct mark & 0xffff0000 == 0x47440000 ct direction reply counter name ct mark map @ctr_u2c"
        in body
    )
    assert "type filter hook forward priority filter - 5; policy accept;" in body


def test_skipped_interfaces_return_before_any_dispatch() -> None:
    table = replace(SAMPLES["tcp"], skip_ifnames=("lo", "eth9"))
    body = lines(table)
    assert body.index('iifname "eth9" return') < next(
        i for i, line in enumerate(body) if "vmap" in line
    )
    assert 'iifname "br-*" return' not in body


def test_update_keeps_state_and_deletes_the_rest() -> None:
    existing = TableObjects(
        chains=frozenset({"prerouting", "forward", "r1", "r9"}),
        sets=frozenset({"r1_count", "r1_allow4", "r9_count", "r1_rate4_1s_b2_t60"}),
        maps=frozenset({"ctr_c2u", "ctr_u2c"}),
        counters=frozenset({"r1_conns", "r1_c2u", "r9_conns"}),
        timeouts=frozenset({"tcp_idle_90s", "udp_5s"}),
    )
    table = KernelTable(
        routes=(
            kroute(max_connections=2, allow=("198.18.0.0/15",), rate=0.5, burst=3, idle_timeout=90),
        )
    )
    head = render(table, existing).split("table inet godoxy_streams {")[0].splitlines()
    assert head[:2] == ["add table inet godoxy_streams", "flush table inet godoxy_streams"]
    deleted = {line.split()[-1] for line in head[2:]}
    assert deleted == {
        *existing.chains,
        *existing.maps,
        "r1_allow4",  # static: defined again with its new elements
        "r9_count",
        "r1_rate4_1s_b2_t60",  # the rate changed: a new meter
        "r9_conns",
        "udp_5s",
    }
    assert all(line.startswith("delete ") for line in head[2:])


@pytest.mark.parametrize(
    ("rate", "text"),
    [(1, "1/second"), (20, "20/second"), (0.5, "30/minute"), (2.5, "150/minute"),
     (1 / 3600, "1/hour"), (1e-6, "1/day"), (0.001, "86/day")],
)  # fmt: skip
def test_rate_text(rate: float, text: str) -> None:
    assert rate_text(rate) == text


@pytest.mark.parametrize(
    ("entries", "networks"),
    [
        (["10.0.0.1/8", "10.1.0.0/16"], ["10.0.0.0/8"]),
        (["::ffff:192.0.2.0/120", "fd00::/8", "::/0"], ["192.0.2.0/24"]),
        (["198.18.0.2", "198.18.0.3"], ["198.18.0.2/31"]),
        ([], []),
    ],
)
def test_v4_networks(entries: list[str], networks: list[str]) -> None:
    assert v4_networks(entries) == networks


def test_ip_hash_buckets_move_only_from_a_member_that_leaves() -> None:
    before = bucket_owners((A, B, C))
    after = bucket_owners((A, C))
    assert {m.identity for m in before} == {"container-a", "container-b", "container-c"}
    for old, new in zip(before, after, strict=True):
        assert new == old or old == B
    assert bucket_owners((C, A)) == after  # the order of members does not matter


@pytest.mark.parametrize(
    "build",
    [
        lambda: KernelRoute(0, "tcp", "0.0.0.0", 1, (A,)),
        lambda: KernelRoute(1, "sctp", "0.0.0.0", 1, (A,)),  # type: ignore[arg-type]
        lambda: KernelRoute(1, "tcp", "::", 1, (A,)),
        lambda: KernelRoute(1, "tcp", "0.0.0.0", 70000, (A,)),
        lambda: KernelRoute(1, "tcp", "0.0.0.0", 1, (A,), rate=0),
        lambda: KernelRoute(1, "tcp", "0.0.0.0", 1, (A,), rate=float("inf")),
        lambda: KernelRoute(1, "tcp", "0.0.0.0", 1, (A,), udp_timeout=-1),
        lambda: KernelRoute(1, "tcp", "0.0.0.0", 1, (A,), max_connections=0),
        lambda: KernelRoute(1, "tcp", "0.0.0.0", 1, (A,), allow=('1.2.3.4" accept',)),
        lambda: Upstream("172.24.0.2; drop", 7),
        lambda: Upstream("example.com", 7),
        lambda: KernelTable(routes=(kroute(), kroute(port=7008))),  # one route_id twice
        lambda: KernelTable(routes=(kroute(), kroute(2))),  # one socket twice
        lambda: KernelTable(skip_ifnames=('eth0" accept',)),
        lambda: Socket("tcp", "0.0.0.0", 0),
    ],
)
def test_bad_values_never_reach_a_script(build: object) -> None:
    with pytest.raises(ValueError):
        build()  # type: ignore[operator]


def test_sub_second_timeouts_round_up_to_one_second() -> None:
    text = render(KernelTable(routes=(kroute(protocol="udp", udp_timeout=0.4),)))
    assert "policy = { unreplied : 1, replied : 1 }" in text


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_defined_objects_name_exactly_what_the_script_defines(name: str) -> None:
    text = render(SAMPLES[name])
    kinds = {"chain": "chains", "set": "sets", "map": "maps", "counter": "counters"}
    kinds["ct timeout"] = "timeouts"
    found = {
        field: frozenset(re.findall(rf"^\t{kind} (\w+) {{", text, re.MULTILINE))
        for kind, field in kinds.items()
    }
    assert defined_objects(SAMPLES[name]) == TableObjects(**found)
