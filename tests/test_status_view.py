"""The status page's history, timeline, paging and search in real Chromium, against the real
daemon serving static routes (no Docker): traffic through one route, an upstream that refuses
every connection behind another, and what the page draws compared with the API's history.

Screenshots go to tests/out/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import json
import re
import socket
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from tests.browser_kit import chromium, click, route_row, rows, wait_for
from tests.daemon_kit import DaemonProcess, unique_namespace
from tests.echo_server import echo_server
from tests.helpers import eventually, free_port, tcp_exchange

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

LOCAL = "127.0.0.1"
OUT = Path(__file__).parent / "out"  # git-ignored
T = TypeVar("T")
TICK = 0.5  # the daemon's history interval in these tests (5 s in production)

DRAWN_JS = """
const row = document.querySelector('#routes tr[data-id="' + CSS.escape(arguments[0]) + '"]');
if (!row) return null;
const cell = row.querySelector('td.hist');
const spark = (name) => {
  const svg = row.querySelector('svg.spark[data-series="' + name + '"]');
  if (!svg) return null;
  const line = svg.querySelector('path.line');
  return { points: svg.dataset.points.split(',').filter((p) => p !== '').map(Number),
           path: line ? line.getAttribute('d') : '',
           marks: svg.querySelectorAll('rect.dialerr').length };
};
return {
  end: cell && cell.dataset.end ? Number(cell.dataset.end) : null,
  verdict: row.dataset.verdict || null, classes: row.className,
  bytes: spark('bytes'), active: spark('active'),
  strips: [...row.querySelectorAll('svg.strip')].map((s) => s.dataset.states),
};
"""


def api(daemon: DaemonProcess, path: str) -> Any:
    with urllib.request.urlopen(f"http://{LOCAL}:{daemon.api_port}{path}", timeout=5) as r:
        return json.load(r)


def routes_file(path: Path, routes: dict[str, str]) -> Path:
    path.write_text("routes:\n" + "".join(f"  {k}: {{{v}}}\n" for k, v in routes.items()))
    return path


def aligned(page: Sequence[T], api_series: Sequence[T], shift: int) -> list[T]:
    """The API's samples that the page drew ``shift`` ticks before the API's newest."""
    end = len(api_series) - shift
    return list(api_series[max(0, end - len(page)) : end])


def drawn_matches_api(driver: WebDriver, daemon: DaemonProcess, route_id: str) -> bool:
    """The sparklines and strips of a row against /api/routes/{id}/history, aligned by the
    time of the newest sample each saw (the page refreshes every 2 s, the daemon samples
    every TICK)."""
    drawn = driver.execute_script(DRAWN_JS, route_id)
    if not drawn or drawn["end"] is None or not drawn["bytes"]:
        return False
    history = api(daemon, f"/api/routes/{route_id}/history")
    shift = round((history["end"] - drawn["end"]) / history["interval"])
    series = history["series"]
    traffic = [a + b for a, b in zip(series["bytes_in"], series["bytes_out"], strict=True)]
    page_bytes, page_active = drawn["bytes"]["points"], drawn["active"]["points"]
    if shift < 0 or shift + len(page_bytes) > history["samples"]:
        return False  # the API moved past the window the page drew: look again
    assert page_bytes == aligned(page_bytes, traffic, shift), (drawn, history)
    assert page_active == aligned(page_active, series["active"], shift), (drawn, history)
    # the line has one point per value, the highest value at the top of the box
    coords = [
        tuple(map(float, p.split(",")))
        for p in re.findall(r"[\d.]+,[\d.]+", drawn["bytes"]["path"])
    ]
    assert len(coords) == len(page_bytes)
    if max(page_bytes) > 0:
        assert min(coords, key=lambda c: c[1]) == coords[page_bytes.index(max(page_bytes))]
    marks = sum(1 for n in aligned(page_bytes, series["dial_errors"], shift) if n)
    assert drawn["bytes"]["marks"] == marks
    api_strips = [m["states"] for m in history["members"]]
    for strip in drawn["strips"]:  # the member strips are the API's letters, shifted alike
        assert list(strip) in [aligned(strip, s, shift) for s in api_strips], (strip, api_strips)
    return True


@pytest.fixture
def upstream() -> Iterator[int]:
    with echo_server() as port:
        yield port


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    with chromium(tmp_path) as driver:
        yield driver


def start_daemon(tmp_path: Path, routes: Path) -> DaemonProcess:
    args = ("--no-docker", "--routes", str(routes))
    env = {"GODOXY_STREAMS_HISTORY_INTERVAL": str(TICK)}
    return DaemonProcess(tmp_path, *args, namespace=unique_namespace(), env=env).start()


def refused_connections(port: int, count: int) -> None:
    """``count`` clients of a route whose upstream refuses: each is closed or reset."""
    for _ in range(count):
        try:
            assert tcp_exchange(LOCAL, port, b"hello") == b""
        except OSError:
            pass  # reset before or while the client half-closes


def test_page_draws_the_history_marks_the_failing_route_and_lists_events(
    tmp_path: Path, upstream: int, browser: WebDriver
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    echo_port, dead_port, spare_port, nobody = (free_port() for _ in range(4))
    routes = routes_file(
        tmp_path / "routes.yml",
        {
            "echo": f"scheme: tcp, bind: {LOCAL}, port: '{echo_port}:{upstream}'",
            "dead": f"scheme: tcp, bind: {LOCAL}, port: '{dead_port}:{nobody}', "
            "healthcheck: {interval: 1s, retries: 2}",
            "spare": f"scheme: tcp, bind: {LOCAL}, port: '{spare_port}:{upstream}'",
        },
    )
    daemon = start_daemon(tmp_path, routes)
    try:
        echo_id, dead_id = f"tcp_{LOCAL}_{echo_port}", f"tcp_{LOCAL}_{dead_port}"
        for size in range(1, 21):  # 20 connections, 1 KiB to 20 KiB each way
            payload = b"x" * 1024 * size
            assert tcp_exchange(LOCAL, echo_port, payload) == payload
        refused_connections(dead_port, 6)
        with socket.create_connection((LOCAL, echo_port)) as held:  # one stays open
            held.sendall(b"ping")
            assert held.recv(4) == b"ping"
            browser.get(f"http://{LOCAL}:{daemon.api_port}/")

            def failing(d: WebDriver) -> dict[str, Any] | None:
                row = route_row(d, "dead")
                return row if row and row["data"].get("verdict") == "failing" else None

            dead_row = wait_for(browser, "marked the refusing route failing", failing)
            assert "failing" in dead_row["cells"][5]  # the State cell says so
            drawn = browser.execute_script(DRAWN_JS, dead_id)
            assert "failing" in drawn["classes"] and drawn["bytes"]["marks"] > 0
            echo = browser.execute_script(DRAWN_JS, echo_id)
            assert echo["verdict"] == "ok" and "failing" not in echo["classes"]

            def drawn_traffic(d: WebDriver) -> bool:
                found = d.execute_script(DRAWN_JS, echo_id)
                return bool(found and found["bytes"] and sum(found["bytes"]["points"]))

            wait_for(browser, "drew the echo route's traffic", drawn_traffic)
            eventually(lambda: drawn_matches_api(browser, daemon, echo_id), timeout=20)
            drawn = browser.execute_script(DRAWN_JS, echo_id)
            total = 2 * sum(1024 * size for size in range(1, 21))
            history = api(daemon, f"/api/routes/{echo_id}/history")["series"]
            assert sum(history["bytes_in"]) + sum(history["bytes_out"]) == total + 8
            assert drawn["active"]["points"][-1] == 1  # the held connection

            # the refusing route's member goes down: its strip says so, as the API does
            def strip_down(d: WebDriver) -> bool:
                found = d.execute_script(DRAWN_JS, dead_id)
                return bool(found and found["strips"] and found["strips"][0].endswith("d"))

            wait_for(browser, "drew the dead member's strip down", strip_down)
            eventually(lambda: drawn_matches_api(browser, daemon, dead_id), timeout=20)

            # the timeline: started routes, the member going down, then a retarget
            routes_file(
                routes,
                {
                    "echo": f"scheme: tcp, bind: {LOCAL}, port: '{echo_port}:{upstream}'",
                    "dead": f"scheme: tcp, bind: {LOCAL}, port: '{dead_port}:{nobody}', "
                    "healthcheck: {interval: 1s, retries: 2}",
                    "spare": f"scheme: tcp, bind: {LOCAL}, port: '{spare_port}:{nobody}'",
                },
            )

            def kinds(d: WebDriver) -> list[tuple[str, str]]:
                return [(r["data"]["kind"], r["data"]["route"]) for r in rows(d, "events")]

            wait_for(
                browser,
                "listed the retarget",
                lambda d: ("route_retargeted", f"tcp_{LOCAL}_{spare_port}") in kinds(d),
            )
            shown = kinds(browser)
            assert ("route_started", echo_id) in shown and ("member_down", dead_id) in shown
            assert (
                shown
                == [
                    (e["kind"], e["route"] or "")
                    for e in reversed(api(daemon, "/api/events?limit=100")["events"])
                ][: len(shown)]
            )
            OUT.mkdir(exist_ok=True)
            assert browser.save_screenshot(str(OUT / "status-view.png"))

            # filters: by kind, then by route from the row's "events" button
            Select(browser.find_element(By.ID, "ev-kind")).select_by_value("member_down")
            wait_for(
                browser, "filtered by kind", lambda d: {k for k, _ in kinds(d)} == {"member_down"}
            )
            click(browser, "#ev-clear")
            click(browser, f'#routes button[data-route="{echo_id}"]')
            wait_for(
                browser,
                "filtered by route",
                lambda d: kinds(d) and {r for _, r in kinds(d)} == {echo_id},
            )
            assert browser.find_element(By.ID, "ev-route").get_attribute("value") == echo_id
            assert browser.switch_to.active_element.get_attribute("id") == "h-events"
    finally:
        assert daemon.stop() == 0


def test_search_and_paging_at_a_few_hundred_routes_by_keyboard_and_in_dark_mode(
    tmp_path: Path, upstream: int
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    routes = routes_file(  # listen ports picked by the daemon: none can be taken meanwhile
        tmp_path / "routes.yml",
        {
            f"svc-{i:03}": f"scheme: tcp, bind: {LOCAL}, port: '{upstream}', "
            "healthcheck: {disable: true}"
            for i in range(300)
        },
    )
    daemon = start_daemon(tmp_path, routes)
    try:
        with chromium(tmp_path, dark=True) as browser:
            browser.get(f"http://{LOCAL}:{daemon.api_port}/")

            def page_info(d: WebDriver) -> str:
                return str(d.find_element(By.ID, "page-info").text)

            def aliases(d: WebDriver) -> list[str]:
                return [r["data"].get("alias", "") for r in rows(d, "routes")]

            wait_for(browser, "showed the first page", lambda d: page_info(d) == "1–50 of 300")
            assert aliases(browser) == [f"svc-{i:03}" for i in range(50)]
            assert "300 running" in browser.find_element(By.ID, "route-counts").text

            # keyboard: Tab from the top reaches the skip links, then the search box
            order = []
            browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
            for _ in range(6):
                active = browser.switch_to.active_element
                name = active.get_attribute("aria-label") or active.text
                order.append(active.get_attribute("id") or name)
                active.send_keys(Keys.TAB)
            # "Previous" is disabled on the first page, so out of the order
            assert order == [
                "Skip to routes",
                "Skip to events",
                "q",
                "page-size",
                "next",
                "events of svc-000",
            ]
            search = browser.find_element(By.ID, "q")
            search.send_keys("svc-12")
            wait_for(browser, "found the matches", lambda d: page_info(d) == "1–10 of 10 matching")
            assert aliases(browser) == [f"svc-12{i}" for i in range(10)]
            focused = browser.switch_to.active_element
            assert focused.get_attribute("id") == "q", "the search box keeps the focus"
            outline = browser.execute_script(
                "return getComputedStyle(arguments[0]).outlineStyle", focused
            )
            assert outline != "none", "the focus is visible"
            search.send_keys(Keys.CONTROL, "a")
            search.send_keys(Keys.DELETE)
            wait_for(browser, "showed all again", lambda d: page_info(d) == "1–50 of 300")
            nxt = browser.find_element(By.ID, "next")
            nxt.send_keys(Keys.ENTER)
            wait_for(browser, "showed the second page", lambda d: page_info(d) == "51–100 of 300")
            assert aliases(browser) == [f"svc-{i:03}" for i in range(50, 100)]
            assert not browser.find_element(By.ID, "prev").get_attribute("disabled")

            # every control has a label or a name
            unnamed = browser.execute_script(
                "return [...document.querySelectorAll('input, select, button')].filter((e) =>"
                " !(e.labels && e.labels.length) && !e.getAttribute('aria-label')"
                " && !e.textContent.trim()).map((e) => e.outerHTML)"
            )
            assert unnamed == []

            # dark mode: the dark palette applies
            background = browser.execute_script(
                "return getComputedStyle(document.body).backgroundColor"
            )
            assert background == "rgb(21, 23, 27)"
            OUT.mkdir(exist_ok=True)
            assert browser.save_screenshot(str(OUT / "status-view-dark-paging.png"))
    finally:
        assert daemon.stop() == 0
