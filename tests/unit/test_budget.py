"""The data plane's descriptor budget (pure): guarantees per share, reserves per protocol,
never more than the total; table-driven cases and a property over any order of takes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from godoxy_streams.streams.budget import COST, DescriptorBudget, Share


def test_a_lone_share_takes_all_but_the_listener() -> None:
    budget = DescriptorBudget(21)
    share = budget.claim("udp")
    assert share.used == 1 and budget.used() == {"tcp": 0, "udp": 1}
    assert sum(share.take() for _ in range(30)) == 20
    assert budget.in_use == 21 and not share.room()


@pytest.mark.parametrize(
    ("total", "flood", "others", "left_for_tcp"),
    [
        # (total, the flooding UDP share, the other shares' protocols, what TCP still gets)
        (415, "udp", ["tcp"], 103),  # TCP's reserve (415 // 4) beats one guarantee (51)
        (400, "udp", ["tcp", "tcp", "tcp"], 100),  # the reserve, shared by TCP's routes
        (400, "udp", ["udp", "tcp"], 100),
        (400, "tcp", ["tcp"], 50),  # same protocol: only the other route's guarantee is kept
    ],
)
def test_a_flood_leaves_the_others_their_part(
    total: int, flood: str, others: list[str], left_for_tcp: int
) -> None:
    budget = DescriptorBudget(total)
    flooding = budget.claim(flood)
    rest = [budget.claim(proto) for proto in others]
    while flooding.take():
        pass
    assert budget.in_use <= total
    tcp = [s for s in rest if s.proto == "tcp"]
    taken = 0
    for share in tcp:  # the TCP shares take in turn until none can
        while share.take():
            taken += 1
    descriptors = taken * COST["tcp"] + len(tcp)  # their listeners count too
    assert abs(descriptors - left_for_tcp) <= COST["tcp"], (descriptors, left_for_tcp)


def test_gives_make_room_and_a_closed_share_gives_everything_back() -> None:
    budget = DescriptorBudget(10)
    share = budget.claim("tcp")
    assert [share.take() for _ in range(5)] == [True, True, True, True, False]
    share.give()
    assert share.room() and share.take()
    with pytest.raises(ValueError):
        DescriptorBudget(10).claim("udp").give()  # nothing was taken
    share.close()
    assert budget.in_use == 0 and budget.used() == {"tcp": 0, "udp": 0}
    share.give()  # a connection that ends after its stream: nothing to do
    assert not share.room() and not share.take()
    assert budget.in_use == 0


def test_guarantees_follow_the_number_of_shares() -> None:
    budget = DescriptorBudget(800)
    shares = [budget.claim("tcp") for _ in range(4)]
    assert budget.guaranteed == 50 and budget.reserved == 200
    shares.pop().close()
    assert budget.guaranteed == 66


def test_refusals_are_counted() -> None:
    budget = DescriptorBudget(3)
    share = budget.claim("tcp")
    assert share.take() and not share.take()
    share.refuse()
    assert budget.refusals == 2


Op = tuple[int, str]  # (share index, what happens to it)


@settings(max_examples=300, deadline=None)
@given(
    total=st.integers(16, 400),
    protos=st.lists(st.sampled_from(["tcp", "udp"]), min_size=1, max_size=6),
    ops=st.lists(
        st.tuples(
            st.integers(0, 5),
            st.sampled_from(["take", "take", "take", "give", "give", "replace", "checked"]),
        ),
        max_size=400,
    ),
)
def test_guarantees_hold_in_any_order(total: int, protos: list[str], ops: list[Op]) -> None:
    """Takes, gives and streams replaced (closed with what they hold, a new one claimed):
    the kept counters agree with the rule recounted over every share, a share is never
    refused within its guarantee or its protocol's reserve, nothing is over-spent."""
    budget = DescriptorBudget(total)
    shares = [budget.claim(proto) for proto in protos]
    held = [0] * len(shares)
    for index, action in ops:
        i = index % len(shares)
        share = shares[i]
        if action == "give":
            if held[i]:
                share.give()
                held[i] -= 1
            continue
        if action == "replace":
            share.close()
            assert not share.room()
            shares[i], held[i] = budget.claim(share.proto), 0
            continue
        cost = COST[share.proto]
        own = share.used + cost <= budget.guaranteed
        reserve = protocol_room(budget, share) >= cost
        room = share.room()
        assert room == allowed_from_scratch(budget, share, cost)
        if action == "checked":
            taken = room
            if room:
                share.take_checked()
        else:
            taken = share.take()
        if taken:
            held[i] += 1
            assert budget.in_use <= total
        else:
            assert not own, "a share was refused within its guarantee"
            assert not reserve, "a share was refused within its protocol's reserve"
    assert budget.in_use == sum(s.used for s in shares)


def protocol_room(budget: DescriptorBudget, share: Share) -> int:
    """What the share's protocol has left of its reserve, less what its other shares keep."""
    same = [s for s in budget._shares[share.proto] if s is not share]
    kept = sum(max(0, budget.guaranteed - s.used) for s in same)
    return budget.reserved - budget.used()[share.proto] - kept


def allowed_from_scratch(budget: DescriptorBudget, share: Share, cost: int) -> bool:
    """The split's rule recounted over every share (what the kept counters must agree with)."""
    g = budget.guaranteed
    kept = sum(max(0, g - s.used) for s in budget._shares[share.proto] if s is not share)
    for proto, shares in budget._shares.items():
        if proto != share.proto and shares:
            unused = sum(max(0, g - s.used) for s in shares)
            kept += max(budget.reserved - budget.used()[proto], unused)
    return budget.in_use + cost + kept <= budget.total
