"""Member choice in a pool: round robin, least connections, client-IP hash; availability from
Docker health, probes and passive mark-down; state kept across updates."""

from __future__ import annotations

import collections

import pytest

from godoxy_streams.streams.pool import MemberSpec, Pool


def pool(mode: str = "round_robin", n: int = 3, **health: str) -> Pool:
    p = Pool(mode)
    p.update(
        MemberSpec(f"m{i}", ("10.0.0.1", 7000 + i), f"c{i}", health.get(f"m{i}")) for i in range(n)
    )
    return p


def picks(p: Pool, count: int, client: str = "") -> list[str]:
    out = []
    for _ in range(count):
        m = p.pick(client)
        out.append(m.key if m else "-")
    return out


def test_round_robin_takes_turns() -> None:
    assert picks(pool(), 6) == ["m0", "m1", "m2", "m0", "m1", "m2"]


def test_round_robin_skips_members_that_are_out() -> None:
    p = pool(m1="unhealthy")
    assert picks(p, 4) == ["m0", "m2", "m0", "m2"]


@pytest.mark.parametrize("state", ["starting", "unhealthy"])
def test_docker_starting_and_unhealthy_get_nothing(state: str) -> None:
    p = pool(n=1, m0=state)
    assert p.pick() is None and not p.any_available() and p.needs_choice()
    assert p.view()[0]["state"] == state


def test_docker_healthy_is_available() -> None:
    p = pool(n=1, m0="healthy")
    assert p.pick() is not None and not p.needs_choice()


def test_least_conn_prefers_the_idlest_and_rotates_ties() -> None:
    p = pool("least_conn")
    p.members[0].active = 5
    p.members[1].active = 1
    p.members[2].active = 1
    first, second = p.pick(), p.pick()
    assert {first.key, second.key} == {"m1", "m2"} if first and second else False


def test_ip_hash_is_sticky_and_moves_only_the_clients_of_a_member_that_leaves() -> None:
    p = pool("ip_hash", n=4)
    clients = [f"192.0.2.{i}" for i in range(200)]
    before = {c: p.pick(c).key for c in clients}  # type: ignore[union-attr]
    assert before == {c: p.pick(c).key for c in clients}  # type: ignore[union-attr]
    assert len(set(before.values())) == 4
    p.set_probe("m2", False, "down")
    after = {c: p.pick(c).key for c in clients}  # type: ignore[union-attr]
    moved = [c for c in clients if before[c] != after[c]]
    assert moved and all(before[c] == "m2" for c in moved)
    assert "m2" not in after.values()


def test_ip_hash_spreads_clients_roughly_evenly() -> None:
    p = pool("ip_hash", n=3)
    counts = collections.Counter(p.pick(f"10.1.{i // 256}.{i % 256}").key for i in range(3000))  # type: ignore[union-attr]
    assert all(700 < n < 1300 for n in counts.values()), counts


def test_passive_mark_down_and_exclusion() -> None:
    p = pool()
    m0 = p.members[0]
    p.failed(m0, "refused")
    assert m0.failures == 1 and m0.last_error == "refused"
    assert "m0" not in picks(p, 4)
    assert p.view()[0]["state"] == "failing"
    assert p.pick(exclude=(p.members[1], p.members[2])) is None


def test_a_lone_member_is_never_marked_down_passively() -> None:
    p = pool(n=1)
    p.failed(p.members[0], "refused")
    assert p.pick() is p.members[0] and not p.needs_choice()


def test_probe_down_then_up() -> None:
    p = pool(n=2)
    changes: list[int] = []
    p.on_change = lambda: changes.append(1)
    p.set_probe("m1", False, "connect refused")
    assert picks(p, 3) == ["m0", "m0", "m0"]
    assert p.view()[1]["state"] == "down" and p.view()[1]["last_error"] == "connect refused"
    p.set_probe("m1", True, None)
    assert "m1" in picks(p, 2)
    assert len(changes) == 2
    p.set_probe("m1", True, None)  # no change, no callback
    assert len(changes) == 2


def test_update_keeps_counters_of_known_members_and_drops_gone_ones() -> None:
    p = pool(n=2)
    p.members[0].total = 7
    p.update([MemberSpec("m0", ("10.0.0.1", 7000), "c0"), MemberSpec("m9", ("10.0.0.9", 1), "c9")])
    assert [m.key for m in p.members] == ["m0", "m9"]
    assert p.members[0].total == 7 and p.members[1].total == 0


def test_a_moved_member_forgets_its_failures_state() -> None:
    p = pool(n=2)
    p.failed(p.members[0], "refused")
    p.set_probe("m0", False, "x")
    p.update([MemberSpec("m0", ("10.0.0.2", 7000), "c0"), MemberSpec("m1", ("10.0.0.1", 7001))])
    assert p.members[0].available(0.0 + 1e12)


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError):
        Pool("random")
    with pytest.raises(ValueError):
        pool().update([], "weighted")


def test_a_sleeping_member_is_never_picked_and_says_so() -> None:
    p = Pool("round_robin")
    p.update([MemberSpec("m0", ("10.0.0.1", 1), sleeping=True), MemberSpec("m1", ("10.0.0.1", 2))])
    assert picks(p, 3) == ["m1", "m1", "m1"]
    assert [m.state(0) for m in p.members] == ["sleeping", "healthy"]
    p.update([MemberSpec("m0", ("10.0.0.9", 1)), MemberSpec("m1", ("10.0.0.1", 2))])  # woke
    assert picks(p, 2) == ["m0", "m1"] and p.members[0].address == ("10.0.0.9", 1)


def test_a_lone_sleeping_member_needs_a_choice_and_none_is_available() -> None:
    p = Pool()
    p.update([MemberSpec("m0", ("", 7), sleeping=True)])
    assert p.needs_choice() and not p.any_available() and p.pick() is None
