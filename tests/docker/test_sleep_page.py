"""The status page shows sleep/wake: a sleeping route and member, the container's reason, and
the sleep and wake events in the timeline, updated live (headless Chromium, as
tests/docker/test_status_page)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.daemon_kit import DaemonProcess
from tests.docker.test_status_page import browser as browser  # noqa: F401  (its fixtures)
from tests.docker.test_status_page import daemon as daemon  # noqa: F401
from tests.docker.test_status_page import members, route_row, rows, wait_for
from tests.helpers import free_port, tcp_exchange

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver


def events(driver: WebDriver) -> list[dict[str, Any]]:
    """The timeline's sleep/wake rows, newest first: cells time, kind, route, message."""
    return [r for r in rows(driver, "events") if r["data"].get("kind") in ("sleep", "wake")]


def test_the_page_shows_a_route_sleep_and_wake(
    daemon: DaemonProcess, run_container: Any, browser: WebDriver
) -> None:
    ns = daemon.namespace
    port = free_port()
    labels = {
        f"{ns}.echo.port": f"{port}:7",
        f"{ns}.idle_timeout": "1s",
        f"{ns}.stop_timeout": "1s",
    }
    box = run_container(labels=labels)
    browser.get(f"http://127.0.0.1:{daemon.api_port}/")

    def sleeping(d: WebDriver) -> dict[str, Any] | None:
        row = route_row(d, "echo")
        slept = any(r["data"]["kind"] == "sleep" for r in events(d))
        return row if row and row["data"]["state"] == "sleeping" and slept else None

    row = wait_for(browser, "showed the route sleeping", sleeping)
    assert row["cells"][5] == "sleeping" and row["cells"][6] == ""  # no error: it wakes
    (member,) = members(browser, "echo").values()
    assert member["data"]["state"] == "sleeping" and "s-sleeping" in member["badge"]
    reason = {r["data"]["name"]: r["cells"] for r in rows(browser, "containers")}[box.name]
    assert reason[4] == "yes" and reason[5].startswith("sleeping (exited)")

    assert tcp_exchange("127.0.0.1", port, b"wake", 60) == b"wake"

    def woke(d: WebDriver) -> list[dict[str, Any]] | None:
        shown = events(d)
        return shown if any(e["data"]["kind"] == "wake" for e in shown) else None

    shown = wait_for(browser, "showed the wake", woke)
    kinds = [e["data"]["kind"] for e in shown]  # newest first: it may sleep again (1s) already
    wake = shown[kinds.index("wake")]
    assert wake["cells"][2] == "echo" and wake["cells"][3].startswith(f"{box.name}: woke")
    assert kinds[kinds.index("wake") + 1] == "sleep"
