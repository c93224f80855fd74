"""The status page (``GET /``) in a real headless browser: Debian's chromium driven by
selenium, against the real daemon and real containers. Only 127.0.0.1 is contacted.

Skips without chromium/chromedriver/selenium (fails under REQUIRE_DOCKER=1, like the Docker
gate). Every wait is an explicit WebDriverWait on what the page shows.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser_kit import chromium, route_row, rows, wait_for
from tests.daemon_kit import DaemonProcess, unique_namespace
from tests.docker.kit import HEALTH_FILE, echo_exec, file_healthcheck, wait_health, whoami_tcp
from tests.helpers import eventually, free_port

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

MEMBERS_JS = """
const row = document.querySelector('#routes tr[data-alias="' + CSS.escape(arguments[0]) + '"]');
return row ? [...row.querySelectorAll('li.member')].map((li) => ({
  data: Object.assign({}, li.dataset),
  text: li.innerText.trim(),
  badge: (li.querySelector('.badge') || {}).className || null,
})) : [];
"""


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    with chromium(tmp_path) as driver:
        yield driver


@pytest.fixture
def daemon(tmp_path: Path, docker_client: Any) -> Iterator[DaemonProcess]:
    process = DaemonProcess(tmp_path, namespace=unique_namespace())
    process.start()
    yield process
    code = process.stop()
    assert code == 0, f"daemon exited {code}\n{process.log()[-4000:]}"


def members(driver: WebDriver, alias: str) -> dict[str, dict[str, Any]]:
    """The member lines shown under a route's target, by container name."""
    found = driver.execute_script(MEMBERS_JS, alias)
    return {m["data"]["container"]: m for m in found}


def test_status_page_shows_routes_errors_and_updates_live(
    daemon: DaemonProcess, run_container: Any, browser: WebDriver, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    ns = daemon.namespace
    port, late_port = free_port(), free_port()
    good = run_container(labels={f"{ns}.echo.port": f"{port}:7"})
    bad = run_container(labels={f"{ns}.bad.scheme": "tcp", f"{ns}.bad.port": "22x"})

    browser.get(f"http://127.0.0.1:{daemon.api_port}/")
    assert browser.title == "godoxy-streams"
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"

    def echo_running(d: WebDriver) -> dict[str, Any] | None:
        row = route_row(d, "echo")
        return row if row and row["data"]["state"] == "running" else None

    echo = wait_for(browser, "showed the echo route running", echo_running)
    alias, scheme, listen, target, container, state, error, active, *_ = echo["cells"]
    assert (alias, scheme, state, error) == ("echo", "tcp", "running", "")
    assert listen == f"127.0.0.1:{port}" and target.endswith(":7") and container == good.name
    row = browser.find_element(By.CSS_SELECTOR, '#routes tr[data-alias="echo"]')
    assert row.is_displayed() and "running" in row.text

    def bad_label(d: WebDriver) -> list[dict[str, Any]]:
        return [r for r in rows(d, "errors") if r["data"].get("label") == f"{ns}.bad.port"]

    (bad_row,) = wait_for(browser, "showed the label error", bad_label)
    assert bad_row["cells"][:3] == [bad.name, f"{ns}.bad.port", "22x"]
    assert "expected [LISTEN:]TARGET" in bad_row["cells"][3]
    assert browser.find_element(By.ID, "errors").find_element(By.TAG_NAME, "th").text

    containers = {r["data"]["name"]: r["cells"] for r in rows(browser, "containers")}
    assert containers[good.name][4] == "yes" and "1 route(s) running" in containers[good.name][5]
    assert containers[bad.name][4] == "no" and "invalid label" in containers[bad.name][5]
    health = browser.find_element(By.ID, "sources").text
    assert "connected" in health and "since" in health
    assert browser.find_element(By.ID, "status").text == "ok"
    assert not browser.find_element(By.ID, "offline").is_displayed()
    shot = tmp_path / "status-page.png"
    assert browser.save_screenshot(str(shot)), "screenshot failed"

    # A container that appears later shows up without a reload, scroll position kept.
    browser.set_window_size(1400, 400)
    browser.execute_script("window.__notReloaded = true; window.scrollTo(0, 150);")
    scroll = browser.execute_script("return window.scrollY;")
    assert scroll > 0, "the page should scroll in a 400 px high window"
    late = run_container(labels={f"{ns}.late.port": f"{late_port}:7"})

    def late_running(d: WebDriver) -> dict[str, Any] | None:
        row = route_row(d, "late")
        return row if row and row["data"]["state"] == "running" else None

    late_row = wait_for(browser, "showed the late container's route", late_running)
    assert late_row["cells"][2] == f"127.0.0.1:{late_port}" and late_row["cells"][4] == late.name
    assert browser.execute_script("return window.__notReloaded === true;"), "page reloaded"
    assert browser.execute_script("return window.scrollY;") == scroll

    # The daemon goes away: the page says so instead of silently showing stale data.
    assert daemon.stop() == 0
    offline = browser.find_element(By.ID, "offline")
    wait_for(browser, "said the API is unreachable", lambda _: offline.is_displayed())
    assert "Cannot reach" in offline.text and offline.get_attribute("role") == "alert"
    assert route_row(browser, "echo") is not None, "last known routes stay visible"


def test_status_page_lists_pool_members_with_their_state(
    daemon: DaemonProcess, run_container: Any, browser: WebDriver, tmp_path: Path
) -> None:
    ns = daemon.namespace
    port = free_port()
    labels = {
        f"{ns}.aliases": "pool",
        f"{ns}.pool.port": f"{port}:7",
        f"{ns}.pool.load_balance.mode": "round_robin",
    }
    # Healthy from the start (the echo server creates the health file before it is ready).
    replicas = [
        run_container(
            labels=labels,
            command=["-t", "7", "--tag", tag, "--health-file", HEALTH_FILE],
            name=f"pool-{tag}",
            healthcheck=file_healthcheck(),
        )
        for tag in ("a", "b")
    ]
    for replica in replicas:
        wait_health(replica)
    a, b = (str(r.name) for r in replicas)

    browser.get(f"http://127.0.0.1:{daemon.api_port}/")

    def all_healthy(d: WebDriver) -> dict[str, dict[str, Any]] | None:
        shown = members(d, "pool")
        states = {name: m["data"].get("state") for name, m in shown.items()}
        return shown if states == {a: "healthy", b: "healthy"} else None

    shown = wait_for(browser, "listed both pool members healthy", all_healthy)
    row = route_row(browser, "pool")
    assert row is not None and row["data"]["state"] == "running"
    assert row["cells"][2] == f"127.0.0.1:{port}"
    assert "pool of 2" in row["cells"][3] and "round robin" in row["cells"][3]
    for name in (a, b):
        assert name in shown[name]["text"] and ":7" in shown[name]["text"]
        assert "s-healthy" in shown[name]["badge"]

    # Round robin: two connections, one to each member; the page counts them.
    tags = {whoami_tcp("127.0.0.1", port) for _ in range(2)}
    assert tags == {"a", "b"}

    def counted(d: WebDriver) -> dict[str, dict[str, Any]] | None:
        shown = members(d, "pool")
        done = len(shown) == 2 and all("0 active · 1 total" in m["text"] for m in shown.values())
        return shown if done else None

    wait_for(browser, "counted one connection per member", counted)

    # Docker calls one member unhealthy: its badge says so, the route keeps running.
    assert echo_exec(replicas[1], "rm", HEALTH_FILE) == 0
    wait_health(replicas[1], "unhealthy")

    def b_unhealthy(d: WebDriver) -> dict[str, dict[str, Any]] | None:
        shown = members(d, "pool")
        return shown if shown.get(b, {}).get("data", {}).get("state") == "unhealthy" else None

    shown = wait_for(browser, "showed the unhealthy member", b_unhealthy)
    assert "s-unhealthy" in shown[b]["badge"] and shown[a]["data"]["state"] == "healthy"
    assert eventually(lambda: whoami_tcp("127.0.0.1", port) == "a", what="traffic to a only")
    row = route_row(browser, "pool")
    assert row is not None and row["data"]["state"] == "running"
    assert browser.save_screenshot(str(tmp_path / "pool-page.png")), "screenshot failed"
