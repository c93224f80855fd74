"""The kernel path's I/O edges with fake programs: what is read back from nft and conntrack,
the DOCKER-USER rule kept single, and a route the kernel refuses left out of the table."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from godoxy_streams.runtime.kernel.conntrack import (
    Conntrack,
    active_by_member,
    active_by_route,
    parse_flows,
)
from godoxy_streams.runtime.kernel.docker_user import CHAIN, DockerUser, rule_spec
from godoxy_streams.runtime.kernel.nft import (
    Completed,
    KernelError,
    Nftables,
    has_cap_net_admin,
    parse_counters,
    parse_objects,
)
from godoxy_streams.runtime.kernel.path import KernelPath
from godoxy_streams.runtime.kernel.routes import KernelRoute, KernelTable, RouteCounters

from .kernelkit import kroute


def _doc(*items: dict[str, object]) -> dict[str, object]:
    return {"nftables": [{"metainfo": {"version": "1.0.6"}}, *items]}


def test_parse_objects_and_counters() -> None:
    doc = _doc(
        {"table": {"name": "godoxy_streams"}},
        {"chain": {"name": "r1"}},
        {"set": {"name": "r1_count"}},
        {"map": {"name": "ctr_c2u"}},
        {"ct timeout": {"name": "udp_60s"}},
        {"counter": {"name": "r1_conns", "packets": 3, "bytes": 180}},
        {"counter": {"name": "r1_c2u", "packets": 10, "bytes": 800}},
        {"counter": {"name": "r1_u2c", "packets": 9, "bytes": 700}},
        {"counter": {"name": "r12_refused", "packets": 2, "bytes": 120}},
        {"counter": {"name": "stranger", "packets": 1, "bytes": 1}},
    )
    objects = parse_objects(doc)
    assert objects.chains == {"r1"} and objects.sets == {"r1_count"}
    assert objects.maps == {"ctr_c2u"} and objects.timeouts == {"udp_60s"}
    assert objects.counters == {"r1_conns", "r1_c2u", "r1_u2c", "r12_refused", "stranger"}
    assert parse_counters(doc) == {
        1: RouteCounters(connections=3, packets_in=10, bytes_in=800, packets_out=9, bytes_out=700),
        12: RouteCounters(refused=2),
    }
    assert parse_counters([]) == {} and parse_objects("junk") == parse_objects({})


CONNTRACK_L = """\
tcp      6 431999 ESTABLISHED src=198.18.0.2 dst=198.18.0.1 sport=40000 dport=7007 \
src=172.24.0.2 dst=198.18.0.2 sport=7 dport=40000 [ASSURED] mark=1195638785 use=1
tcp      6 119 TIME_WAIT src=198.18.0.2 dst=198.18.0.1 sport=40002 dport=7007 \
src=172.24.0.3 dst=198.18.0.2 sport=7 dport=40002 [ASSURED] mark=1195638785 use=1
tcp      6 117 SYN_SENT src=198.18.0.2 dst=198.18.0.1 sport=40004 dport=7007 [UNREPLIED] \
src=172.24.0.3 dst=198.18.0.2 sport=7 dport=40004 mark=1195638785 use=1
udp      17 29 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=7007 [UNREPLIED] \
src=172.24.0.2 dst=198.18.0.2 sport=7 dport=5000 mark=1195638786 use=1
udp      17 29 src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 src=10.0.0.2 dst=10.0.0.1 sport=2 \
dport=1 mark=7 use=1
garbage line
"""


def test_flows_by_route_and_member() -> None:
    flows = parse_flows(CONNTRACK_L)
    assert [(f.route_id, f.protocol, f.state, f.client) for f in flows] == [
        (1, "tcp", "ESTABLISHED", ("198.18.0.2", 40000)),
        (1, "tcp", "TIME_WAIT", ("198.18.0.2", 40002)),
        (1, "tcp", "SYN_SENT", ("198.18.0.2", 40004)),
        (2, "udp", "", ("198.18.0.2", 5000)),
    ]
    assert active_by_route(flows) == {1: 2, 2: 1}  # TIME_WAIT is over
    assert active_by_member(flows) == {
        1: {("172.24.0.2", 7): 1, ("172.24.0.3", 7): 1},
        2: {("172.24.0.2", 7): 1},
    }


class FakePrograms:
    """iptables (one DOCKER-USER chain as a list of rule lines) and conntrack, recorded."""

    def __init__(self, rules: list[str] | None = None, chain: bool = True) -> None:
        self.rules = rules if rules is not None else ["-j RETURN"]
        self.chain = chain
        self.calls: list[list[str]] = []

    async def __call__(self, argv: Sequence[str], stdin: str | None) -> Completed:
        self.calls.append(list(argv))
        if argv[0] == "conntrack":
            return Completed(1, "", "conntrack v1.4.7: 0 flow entries have been deleted.\n")
        if argv[0] != "iptables-nft" or not self.chain:
            return Completed(1, "", f"{argv[0]}: No chain/target/match by that name.")
        op, rest = argv[3], " ".join(argv[5:])
        if op == "-S":
            lines = [f"-N {CHAIN}", *(f"-A {CHAIN} {rule}" for rule in self.rules)]
            return Completed(0, "\n".join(lines) + "\n", "")
        if op == "-I":
            self.rules.insert(0, " ".join(argv[6:]))
            return Completed(0, "", "")
        if op == "-D" and rest in self.rules:
            self.rules.remove(rest)
            return Completed(0, "", "")
        return Completed(1, "", "Bad rule")


OURS = " ".join(rule_spec())
DROP = "-s 10.0.0.1/32 -j DROP"


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (["-j RETURN"], [OURS, "-j RETURN"]),
        ([OURS, "-j RETURN"], [OURS, "-j RETURN"]),  # a crashed daemon's rule is kept, once
        ([DROP, OURS, "-j RETURN"], [DROP, OURS, "-j RETURN"]),  # where an operator moved it
        ([DROP, OURS, OURS, "-j RETURN"], [OURS, DROP, "-j RETURN"]),
    ],
)  # fmt: skip
async def test_docker_user_rule_is_single(before: list[str], after: list[str]) -> None:
    programs = FakePrograms(list(before))
    assert await DockerUser(programs).ensure() == ["iptables-nft"]
    assert programs.rules == after
    assert await DockerUser(programs).ensure() == ["iptables-nft"]
    assert programs.rules == after
    assert await DockerUser(programs).remove() == 1
    assert programs.rules == [r for r in after if r != OURS]


async def test_no_docker_user_chain_means_nothing_to_do() -> None:
    programs = FakePrograms(chain=False)
    assert await DockerUser(programs).ensure() == []
    assert await DockerUser(programs).remove() == 0
    assert all(call[3] == "-S" for call in programs.calls)


async def test_kill_with_nothing_to_kill_is_no_error() -> None:
    programs = FakePrograms()
    assert await Conntrack(programs).kill(3, ("172.24.0.2", 7), "udp") == 0
    assert programs.calls[-1] == [
        *("conntrack", "-D", "-m", "0x47440003/0xffffffff", "-p", "udp"),
        *("--reply-src", "172.24.0.2", "--reply-port-src", "7"),
    ]


class FakeNft:
    """nft that refuses every script containing ``poison``, and lists an existing table."""

    def __init__(self, poison: str) -> None:
        self.poison = poison
        self.applied: list[str] = []
        self.listings = 0

    async def __call__(self, argv: Sequence[str], stdin: str | None) -> Completed:
        if argv[1] == "-j":
            self.listings += 1
            return Completed(0, json.dumps(_doc({"chain": {"name": "prerouting"}})), "")
        if stdin is not None and self.poison in stdin:
            return Completed(1, "", "Error: Could not process rule: Operation not supported")
        if "-c" not in argv:
            self.applied.append(stdin or "")
        return Completed(0, "", "")


async def test_a_refused_route_is_left_out_and_named() -> None:
    nft = FakeNft(poison="chain r2 {")
    path = KernelPath(nft=Nftables(nft))
    table = KernelTable(routes=(kroute(1), kroute(2, port=7008), kroute(3, port=7009)))
    failed = await path.apply(table)
    assert list(failed) == [2] and "Operation not supported" in failed[2]
    assert len(nft.applied) == 1
    assert "jump r1" in nft.applied[0] and "jump r3" in nft.applied[0]
    assert "jump r2" not in nft.applied[0]
    assert nft.applied[0].startswith("add table inet godoxy_streams\nflush table")


@pytest.mark.parametrize("routes", [(), (kroute(1),), (kroute(1), kroute(2, port=7008))])
async def test_a_table_the_kernel_refuses_as_a_whole_raises(
    routes: tuple[KernelRoute, ...],
) -> None:
    path = KernelPath(nft=Nftables(FakeNft(poison="chain prerouting")))
    with pytest.raises(KernelError, match="Operation not supported"):
        await path.apply(KernelTable(routes=routes))


async def test_what_the_table_holds_is_listed_only_when_unknown() -> None:
    nft = FakeNft(poison="never")
    path = KernelPath(nft=Nftables(nft))
    await path.apply(KernelTable(routes=(kroute(1),)))
    await path.apply(KernelTable(routes=(kroute(2),)))
    assert nft.listings == 1  # the second update knew what the first left
    assert "delete chain inet godoxy_streams r1" in nft.applied[1]
    assert "delete counter inet godoxy_streams r1_conns" in nft.applied[1]


@pytest.mark.parametrize(
    ("status", "expected"),
    [("CapEff:\t000001ffffffffff\n", True), ("CapEff:\t0000000000000400\n", False), ("", False)],
)
def test_cap_net_admin(tmp_path: object, status: str, expected: bool) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "status"
    path.write_text(status)
    assert has_cap_net_admin(path) is expected
