"""``PendingHellos``: the caps on connections waiting for a ClientHello, and one timer that
expires them in the order they came (``Deadlines``; a clock stands in for the event loop)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from godoxy_streams.streams.deadlines import Deadlines
from godoxy_streams.streams.tls.pending import PendingHellos


class Clock:
    """The two calls ``PendingHellos`` makes of its loop; timers are only recorded."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[Timer] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(when, callback)
        self.timers.append(timer)
        return timer

    def armed(self) -> list[float]:
        return [t.when for t in self.timers if not t.cancelled]

    def fire(self) -> None:
        """Run the armed timer (there is at most one) at its time."""
        (timer,) = [t for t in self.timers if not t.cancelled]
        self.timers.remove(timer)
        self.now = timer.when
        timer.callback()


class Timer:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when, self.callback, self.cancelled = when, callback, False

    def cancel(self) -> None:
        self.cancelled = True


class Reader:
    def __init__(self, name: str, expired: list[str]) -> None:
        self.name, self.expired = name, expired
        self.source: str | None = None

    def timed_out(self) -> None:
        self.expired.append(self.name)

    def drop(self) -> None:
        raise AssertionError("not dropped here")


def pending(timeout: float = 5.0, total: int = 10, per_source: int = 10) -> PendingHellos:
    hellos = PendingHellos(timeout, total, per_source)
    hellos.loop = Clock()  # type: ignore[assignment]
    return hellos


def clock(owner: PendingHellos | Deadlines[str]) -> Any:
    return owner.loop


def test_the_caps_refuse_with_a_reason_and_free_up_as_connections_leave() -> None:
    hellos, expired = pending(total=3, per_source=2), list[str]()
    a1, a2, a3 = (Reader(f"a{i}", expired) for i in range(3))
    b1, c1 = Reader("b1", expired), Reader("c1", expired)
    assert hellos.enter(a1, "10.0.0.1") is None and a1.source == "10.0.0.1"
    assert hellos.enter(a2, "10.0.0.1") is None
    assert hellos.enter(a3, "10.0.0.1") == "2 ClientHellos being read from 10.0.0.1"
    assert hellos.enter(b1, "10.0.0.2") is None
    assert hellos.enter(c1, "10.0.0.3") == "too many ClientHellos being read"
    hellos.leave(a1)
    hellos.leave(a1)  # twice: the second is a no-op
    assert a1.source is None and hellos.by_source == {"10.0.0.1": 1, "10.0.0.2": 1}
    assert hellos.enter(c1, "10.0.0.3") is None
    assert len(hellos) == 3 and list(hellos) == list[object]([a2, b1, c1])


def test_one_timer_expires_them_in_the_order_they_came() -> None:
    hellos, expired = pending(timeout=5.0), list[str]()
    readers = [Reader(f"r{i}", expired) for i in range(4)]
    for i, reader in enumerate(readers):
        clock(hellos).now = float(i)  # r0 at 0 s, r1 at 1 s, ...
        assert hellos.enter(reader, "10.0.0.1") is None
    assert clock(hellos).armed() == [5.0]  # one timer, for the first deadline
    hellos.leave(readers[1])  # r1 got its hello in time
    clock(hellos).fire()  # at 5 s: only r0 is due
    assert expired == ["r0"] and clock(hellos).armed() == [7.0]  # next: r2 (entered at 2 s)
    clock(hellos).now = 20.0  # the loop was late: both left are due
    (timer,) = clock(hellos).timers
    clock(hellos).timers.clear()
    timer.callback()
    assert expired == ["r0", "r2", "r3"] and clock(hellos).armed() == []
    assert not hellos and hellos.by_source == {}


def test_the_timer_is_set_again_when_a_connection_comes_after_the_last_left() -> None:
    hellos, expired = pending(timeout=1.0), list[str]()
    first, second = Reader("first", expired), Reader("second", expired)
    hellos.enter(first, "10.0.0.1")
    clock(hellos).fire()
    assert expired == ["first"] and clock(hellos).armed() == []
    clock(hellos).now = 30.0
    hellos.enter(second, "10.0.0.1")
    assert clock(hellos).armed() == [31.0]


def test_close_stops_the_timer_and_names_who_still_waits() -> None:
    hellos, expired = pending(), list[str]()
    reader = Reader("r", expired)
    hellos.enter(reader, "10.0.0.1")
    assert hellos.close() == list[object]([reader]) and clock(hellos).armed() == []


def test_a_restarted_item_waits_again_from_the_end() -> None:
    """``Deadlines.add`` of an item that waits already restarts its time (a redial)."""
    expired: list[str] = []
    deadlines: Deadlines[str] = Deadlines(5.0, expired.append)
    deadlines.loop = Clock()  # type: ignore[assignment]
    deadlines.add("a")
    clock(deadlines).now = 1.0
    deadlines.add("b")
    clock(deadlines).now = 2.0
    deadlines.add("a")  # restarted: due at 7 s, after b
    assert list(deadlines) == ["b", "a"]
    clock(deadlines).fire()  # the timer set at the first add, for 5 s: nothing due yet
    assert expired == [] and clock(deadlines).armed() == [6.0]
    clock(deadlines).fire()
    assert expired == ["b"] and clock(deadlines).armed() == [7.0]
    assert deadlines.discard("a") and not deadlines.discard("a")
