"""The status page against a daemon that requires a token, in the real headless browser
(the ``browser`` fixture of tests/docker/test_status_page.py; no Docker engine needed): the
page loads without credentials, asks for the token when its first API call gets a 401, asks
again when a token is refused, keeps the accepted one in the tab (a reload does not ask),
and takes one from the address (``#token=...``, then removed from it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.daemon_kit import DaemonProcess, unique_namespace
from tests.docker.test_status_page import browser as browser  # noqa: F401  (the fixture)
from tests.docker.test_status_page import route_row, wait_for
from tests.helpers import free_port

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

TOKEN = "page-token-" + "x" * 16
LOCAL = "127.0.0.1"


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    routes = tmp_path / "routes.yml"
    routes.write_text(f"routes:\n  echo: {{scheme: tcp, bind: {LOCAL}, port: '{free_port()}:7'}}\n")
    args = ("--no-docker", "--routes", str(routes))
    env = {"GODOXY_STREAMS_API_TOKEN": TOKEN}
    process = DaemonProcess(tmp_path, *args, namespace=unique_namespace(), env=env).start()
    yield process
    assert process.stop() == 0


def shown(driver: WebDriver, element_id: str) -> bool:
    return bool(driver.execute_script(f"return !document.getElementById('{element_id}').hidden;"))


def give_token(driver: WebDriver, token: str) -> None:
    from selenium.webdriver.common.by import By

    field = driver.find_element(By.ID, "token")
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#token-form button").click()


def echo_shown(driver: WebDriver) -> dict[str, Any] | None:
    return route_row(driver, "echo")


def test_the_page_asks_for_the_token_and_keeps_it_in_the_tab(
    daemon: DaemonProcess,
    browser: WebDriver,  # noqa: F811
) -> None:
    from selenium.webdriver.common.by import By

    page = f"http://{LOCAL}:{daemon.api_port}/"
    browser.get(page)
    assert browser.title == "godoxy-streams"
    wait_for(browser, "asked for the token", lambda d: shown(d, "token-form"))
    assert browser.find_element(By.ID, "token").get_attribute("type") == "password"
    assert "needs its bearer token" in browser.find_element(By.ID, "token-why").text
    assert echo_shown(browser) is None

    give_token(browser, "not-the-token")
    wait_for(
        browser,
        "said the token was refused",
        lambda d: shown(d, "token-form") and "refused" in d.find_element(By.ID, "token-why").text,
    )
    give_token(browser, TOKEN)
    row = wait_for(browser, "showed the routes", echo_shown)
    assert row["cells"][0] == "echo" and not shown(browser, "token-form")
    stored = browser.execute_script("return sessionStorage.getItem('godoxy-streams-token');")
    assert stored == TOKEN

    browser.execute_script("window.__notReloaded = true;")
    browser.refresh()  # the same tab: no question
    wait_for(browser, "showed the routes after a reload", echo_shown)
    assert browser.execute_script("return window.__notReloaded === undefined;")
    assert not shown(browser, "token-form")

    browser.execute_script("sessionStorage.clear();")
    browser.get(page + "#token=" + TOKEN)
    browser.refresh()  # a hash change alone does not load the page again
    wait_for(browser, "showed the routes with the token of the address", echo_shown)
    assert not shown(browser, "token-form")
    assert "token" not in browser.current_url, "the token stays in the address bar"
    stored = browser.execute_script("return sessionStorage.getItem('godoxy-streams-token');")
    assert stored == TOKEN
