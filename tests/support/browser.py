"""A real headless Chromium (Debian's package) driven by Selenium, for the console's tests.

One browser per test process (starting Chromium costs about a second); each test gets it with
its cookies cleared. Every wait is an explicit condition with a deadline (``WebDriverWait``),
never a sleep. Without Chromium the console tests skip with a notice, unless
``ODOCK_TEST_REQUIRE_BROWSER=1`` (set by ``.ci/run``) makes its absence a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

WAIT_SECONDS = 15
DESKTOP = (1280, 900)
PHONE = (390, 844)


def find_chromium() -> tuple[str, str] | None:
    """The Chromium binary and its driver, when both are installed."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None
    )
    return (browser, driver) if browser and driver else None


def require_chromium() -> tuple[str, str]:
    """Chromium and its driver, or a skip with a notice (a failure when they are required)."""
    found = find_chromium()
    if found is None:
        message = "Chromium/chromedriver not installed: the console browser tests were SKIPPED"
        if os.environ.get("ODOCK_TEST_REQUIRE_BROWSER") == "1":
            pytest.fail(message.replace("were SKIPPED", "are required (ODOCK_TEST_REQUIRE_BROWSER=1)"))
        pytest.skip(message)
    return found


def start_chromium(browser: str, driver: str) -> WebDriver:
    """A headless Chromium at desktop size."""
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--no-first-run",
        f"--window-size={DESKTOP[0]},{DESKTOP[1]}",
        "--lang=en-GB",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


@dataclass
class Page:
    """The browser at one server: open pages, fill forms, wait for what a person would see."""

    driver: WebDriver
    base_url: str

    def open(self, path: str) -> Page:
        """Load ``path`` and wait until its document is ready."""
        self.driver.get(self.base_url + path)
        self.until(lambda d: d.execute_script("return document.readyState") == "complete")
        return self

    @property
    def path(self) -> str:
        """The current path (and query)."""
        url = str(self.driver.current_url)
        return url[len(self.base_url) :] if url.startswith(self.base_url) else url

    def until(self, condition: Callable[[WebDriver], Any], message: str = "") -> Any:
        """Wait for ``condition`` (a Selenium expected condition or any callable) to hold."""
        try:
            return WebDriverWait(self.driver, WAIT_SECONDS).until(_through_navigation(condition))
        except TimeoutException as exc:
            raise AssertionError(
                f"timed out waiting for {message or condition} on {self.path}\n"
                f"console: {self.console_errors()}\npage text: {self.body_text()[:2000]}"
            ) from exc

    def find(self, css: str) -> WebElement:
        """The first visible element matching ``css`` (waiting for it)."""
        return self.until(ec.visibility_of_element_located((By.CSS_SELECTOR, css)), css)  # type: ignore[no-any-return]

    def all(self, css: str) -> list[WebElement]:
        """Every element matching ``css`` now."""
        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def field(self, name: str, scope: str = "") -> WebElement:
        """The form field named ``name`` (inside ``scope``, a CSS selector, when given)."""
        return self.find(f'{scope} [name="{name}"]'.strip())

    def fill(self, values: dict[str, str], scope: str = "") -> Page:
        """Type each value into its field (selects are chosen by value)."""
        for name, value in values.items():
            element = self.field(name, scope)
            if element.tag_name == "select":
                Select(element).select_by_value(value)
            else:
                element.clear()
                element.send_keys(value)
        return self

    def click(self, css: str) -> Page:
        """Click the element matching ``css`` once it is clickable."""
        element = self.until(ec.element_to_be_clickable((By.CSS_SELECTOR, css)), css)
        element.click()
        return self

    def click_text(self, text: str, tag: str = "*") -> Page:
        """Click the (first clickable) element whose text is ``text``."""
        xpath = f"//{tag}[normalize-space(.)={_xpath_literal(text)}]"
        self.until(ec.element_to_be_clickable((By.XPATH, xpath)), f"clickable '{text}'").click()
        return self

    def submit(self, scope: str = "form[data-api-form]") -> Page:
        """Press the submit button of the form matching ``scope``."""
        return self.click(f'{scope} [type="submit"]')

    def wait_path(self, predicate: Callable[[str], bool], message: str = "a new page") -> str:
        """Wait until the current path satisfies ``predicate``, and return it."""
        self.until(lambda _: predicate(self.path), message)
        self.until(lambda d: d.execute_script("return document.readyState") == "complete")
        return self.path

    def wait_text(self, text: str, css: str = "body") -> WebElement:
        """Wait until the element ``css`` shows ``text``."""

        def showing(driver: WebDriver) -> WebElement | None:
            element = driver.find_element(By.CSS_SELECTOR, css)
            return element if text in element.text else None

        # The element that showed the text, not a second lookup that a reload could race.
        return self.until(showing, f"'{text}' in {css}")  # type: ignore[no-any-return]

    def error_for(self, field: str) -> str:
        """The error shown next to ``field`` (waiting until there is one)."""
        slot = f'[data-error-for="{field}"]'
        self.until(
            lambda d: d.find_element(By.CSS_SELECTOR, slot).text.strip() != "", f"an error for {field}"
        )
        return str(self.driver.find_element(By.CSS_SELECTOR, slot).text)

    def body_text(self) -> str:
        """The page's visible text."""
        return str(self.driver.find_element(By.TAG_NAME, "body").text)

    def console_errors(self) -> list[str]:
        """Severe messages in the browser's console since the last call (script errors, CSP refusals)."""
        try:
            entries = self.driver.get_log("browser")
        except Exception:
            return []
        return [e["message"] for e in entries if e.get("level") == "SEVERE"]

    def cookies(self) -> dict[str, str]:
        """The browser's cookies for the server."""
        return {c["name"]: c["value"] for c in self.driver.get_cookies()}

    def screenshot(self, path: Path) -> None:
        """Save what the browser shows now as a PNG."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path))


# What Chromium answers when a page is replaced (a reload, a redirect) between finding an element
# and reading it: the condition is simply not met yet, and is asked again on the new page.
_REPLACED_PAGE = ("does not belong to the document", "stale element", "No node with given id")


def _through_navigation(condition: Callable[[WebDriver], Any]) -> Callable[[WebDriver], Any]:
    """``condition``, read as "not yet" while the page it looks at is being replaced."""

    def checked(driver: WebDriver) -> Any:
        try:
            return condition(driver)
        except WebDriverException as exc:
            if any(marker in str(exc) for marker in _REPLACED_PAGE):
                return False
            raise

    return checked


def _xpath_literal(text: str) -> str:
    if "'" not in text:
        return f"'{text}'"
    return "concat('" + text.replace("'", "', \"'\", '") + "')"
