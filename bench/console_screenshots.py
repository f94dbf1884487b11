"""Screenshots of the console's main pages for the docs, taken in a real headless Chromium.

Flow::

    start a demo gateway (embedded, a fresh data directory): the demo organisation, its mock
    model and key; add sample data: a team, users, more keys, a few governed calls (usage)
    sign in through the sign-in form as the organisation's ORG_ADMIN
    for each page of the organisation workspace: open it; a page that answers an error (not on
    this branch yet) is skipped; otherwise save docs/console/<page>.png at 1280 x 900
    the playground: send a prompt, wait for the answer and its usage record, save it (also at
    phone width); the admin workspace and its gateway-health page as the super admin
    print what was written (and what was skipped)

    .venv/bin/python -m bench.console_screenshots [--out docs/console]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from selenium.webdriver.common.by import By
from tests.support.browser import DESKTOP, PHONE, Page, find_chromium, start_chromium
from tests.support.server import ThreadedServer

from bench.console_pages import PAGES
from odock.admin.demo import DEMO_MODEL
from odock.app import create_app
from odock.identity.accounts import create_password_user
from odock.identity.passwords import Passwords
from odock.keys.tables import ApiKeyType
from odock.runtime import Runtime
from odock.settings import load_settings
from odock.tenancy.tables import Role

PASSWORD = "screenshots password"
ROOT = Path(__file__).resolve().parent.parent


async def sample_data(runtime: Runtime) -> tuple[str, str, str, str]:
    """Add to the demo organisation: (organisation id, admin e-mail, super admin e-mail, a key secret)."""
    control = runtime.control
    org = next(iter(await control.tenancy.list_organisations()))
    team = await control.tenancy.create_team(org.id, "Research")
    analyst = await control.users.create_user("ada@example.com", organisation_id=org.id)
    await control.keys.create(
        org.id, "research notebooks", type=ApiKeyType.TEAM, team_id=team.id, models=[DEMO_MODEL]
    )
    await control.keys.create(
        org.id, "ada's laptop", type=ApiKeyType.USER, user_id=analyst.id, models=[DEMO_MODEL]
    )
    issued = await control.keys.create(org.id, "production backend", models=[DEMO_MODEL])
    passwords = Passwords(time_cost=1, memory_kib=1024)
    admin, root = "grace@example.com", "root@example.com"
    await create_password_user(
        runtime.sessions,
        passwords,
        email=admin,
        password=PASSWORD,
        role=Role.ORG_ADMIN,
        organisation_id=org.id,
    )
    await create_password_user(
        runtime.sessions,
        passwords,
        email=root,
        password=PASSWORD,
        role=Role.SUPER_ADMIN,
        organisation_id=None,
    )
    return org.id, admin, root, issued.secret


def governed_calls(base_url: str, secret: str, count: int = 12) -> None:
    """A few model calls through the gateway, so usage pages have records."""
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {secret}"}, timeout=30) as http:
        for i in range(count):
            body = {"model": DEMO_MODEL, "messages": [{"role": "user", "content": f"Question {i}"}]}
            http.post("/v1/chat/completions", json=body).raise_for_status()


def sign_in(page: Page, email: str) -> None:
    """Through the form, as a person does."""
    page.driver.delete_all_cookies()
    page.open("/sign-in")
    page.fill({"email": email, "password": PASSWORD}).submit()
    page.wait_path(lambda p: not p.startswith("/sign-in"))


def is_error_page(page: Page) -> bool:
    """Whether the page shown is the console's error page."""
    return bool(page.driver.find_elements(By.CSS_SELECTOR, '[data-testid="error-message"]'))


def shoot(page: Page, out: Path, name: str, written: list[str], focus: str | None = None) -> None:
    """Save the browser's view as ``out/name.png`` (scrolled to the top, or to ``focus``)."""
    path = out / f"{name}.png"
    page.driver.execute_script(
        "document.activeElement && document.activeElement.blur();"
        "const at = arguments[0] && document.querySelector(arguments[0]);"
        "if (at) at.scrollIntoView({block: 'start'}); else window.scrollTo(0, 0);",
        focus,
    )
    page.screenshot(path)
    written.append(str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path))


def take(base_url: str, org: str, admin: str, root: str, out: Path) -> tuple[list[str], list[str]]:
    """Every screenshot; returns (written, skipped)."""
    found = find_chromium()
    if found is None:
        raise SystemExit(
            "Chromium and chromedriver are needed (Debian: apt-get install chromium chromium-driver)"
        )
    driver = start_chromium(*found)
    written: list[str] = []
    skipped: list[str] = []
    try:
        page = Page(driver, base_url)
        driver.set_window_size(*DESKTOP)
        page.open("/sign-in")
        shoot(page, out, "sign-in", written)
        sign_in(page, admin)
        for label, below in PAGES:
            if "?" in below:
                continue  # the timing variants of a page (a range, a filter): one picture a page
            page.open(f"/o/{org}{below}")
            if is_error_page(page):
                skipped.append(f"{label} (/o/{{org}}{below}): not on this branch")
                continue
            name = below.strip("/").replace("/", "-") or "dashboard"
            if below == "/playground":
                page.fill({"prompt": "Write a haiku about budgets."}, "form[data-playground]")
                page.click("form[data-playground] [data-send]")
                page.until(lambda d: page.all("[data-call][data-recorded]"), "the usage record")
                shoot(page, out, name, written)
                driver.set_window_size(*PHONE)
                shoot(page, out, name + "-phone", written, focus="#answer-title")
                driver.set_window_size(*DESKTOP)
            else:
                shoot(page, out, name, written)
        sign_in(page, root)
        page.open("/admin")
        shoot(page, out, "admin", written)
        page.open("/admin/health")
        shoot(page, out, "admin-health", written)
    finally:
        driver.quit()
    return written, skipped


def main(argv: Sequence[str] | None = None) -> None:
    """Start the demo gateway, add sample data, take the screenshots."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "console")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="odock-screenshots-") as work:
        settings = load_settings(
            data_dir=Path(work) / "data",
            demo=True,
            log_level="warning",
            password_hash_time_cost=1,
            password_hash_memory_kib=1024,
        )
        app = create_app(settings)
        server = ThreadedServer(app).start()
        try:
            assert app.runtime is not None
            org, admin, root, secret = server.run(sample_data(app.runtime))
            governed_calls(server.base_url, secret)
            server.run(app.runtime.recorder.flush())
            written, skipped = take(server.base_url, org, admin, root, args.out)
        finally:
            server.stop()
    print("written:\n  " + "\n  ".join(written))
    if skipped:
        print("skipped:\n  " + "\n  ".join(skipped))


if __name__ == "__main__":
    main()
