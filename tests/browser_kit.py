"""Driving the status page in a real headless browser: Debian's chromium under selenium,
against a daemon on 127.0.0.1 only (every other host name resolves to nothing). Every wait is
an explicit WebDriverWait on what the page shows."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.helpers import docker_unavailable

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT = 20.0
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # root in a container
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--window-size=1400,900",
    "--no-first-run",
    "--disable-extensions",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-features=Translate,OptimizationHints,MediaRouter",
    # Nothing but loopback: every host name resolves to nothing.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)

ROWS_JS = """
return [...document.querySelectorAll(arguments[0] + ' tbody tr')].map((tr) => ({
  data: Object.assign({}, tr.dataset),
  cells: [...tr.cells].map((td) => td.innerText.trim()),
}));
"""


@contextmanager
def chromium(profile: Path, *, dark: bool = False) -> Iterator[WebDriver]:
    """Debian's headless chromium under selenium (its profile and driver log in ``profile``),
    in dark mode when ``dark``; skips (or fails under REQUIRE_DOCKER=1) without them."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        docker_unavailable(f"selenium is not installed ({e}); pip install 'selenium>=4.20,<5'")
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        docker_unavailable(
            f"{' and '.join(missing)} missing; apt-get install chromium chromium-driver"
        )
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile / 'chromium-profile'}"):
        options.add_argument(flag)
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(profile / "driver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        if dark:
            features = [{"name": "prefers-color-scheme", "value": "dark"}]
            driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": features})
        yield driver
    finally:
        driver.quit()


def rows(driver: WebDriver, table: str) -> list[dict[str, Any]]:
    """The rows of a table as the user sees them, read in one atomic script call."""
    return list(driver.execute_script(ROWS_JS, f"#{table}"))


def wait_for(driver: WebDriver, what: str, condition: Any) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(condition, f"page never {what}")


def route_row(driver: WebDriver, alias: str) -> dict[str, Any] | None:
    return next((r for r in rows(driver, "routes") if r["data"].get("alias") == alias), None)


def click(driver: WebDriver, css: str) -> None:
    """Click the element ``css`` names, found again if the page redrew it meanwhile."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def clicked(d: WebDriver) -> bool:
        try:
            d.find_element(By.CSS_SELECTOR, css).click()
        except StaleElementReferenceException:
            return False
        return True

    wait_for(driver, f"let {css} be clicked", clicked)
