"""The dashboard in a real browser: Playwright driving Debian's chromium against uvicorn.

`.ci/run` installs chromium when it is missing, so in CI these tests run (a missing browser fails
there); elsewhere they skip with the command that installs it. Screenshots go to
$ABFLOW_WEB_SCREENSHOTS (`make screenshots` sets docs/screenshots) or the test's temp dir.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from abflow.definitions import Experiment
from abflow.settings import Settings
from tests.web.conftest import config_row, make_app

CHROMIUM = os.environ.get("ABFLOW_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(
    web_settings: Settings, web_engine: Engine, web_demo: dict[str, Experiment]
) -> Iterator[str]:
    """uvicorn serving the app on loopback (public reads: a product manager just opens it)."""
    import uvicorn

    app = make_app(web_settings, web_engine, public_read=True)
    port = _free_port()
    # loop="asyncio": never a process-wide uvloop policy inside the test process
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", loop="asyncio")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless chromium for this module.

    Not for the session: while Playwright's sync API is open the thread has a running event loop,
    and Prefect then turns a later test's flow call into a coroutine.
    """
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} missing: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # Playwright gives every launch a fresh, empty --user-data-dir of its own.
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) and page."""
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    p = context.new_page()
    p.set_default_timeout(20_000)
    yield p
    context.close()


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go."""
    target = os.environ.get("ABFLOW_WEB_SCREENSHOTS")
    path = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_list_shows_the_demo_and_a_click_opens_the_report(
    page: Any, server: str, shots: Path
) -> None:
    page.goto(server + "/")
    rows = page.locator("#experiments tbody tr")
    decisions = {
        rows.nth(i).get_attribute("data-key"): rows.nth(i).get_attribute("data-decision")
        for i in range(rows.count())
    }
    assert {k: decisions.get(k) for k in ("checkout_button", "followup_timing",
                                          "enrichment_strategy")} == {
        "checkout_button": "ship", "followup_timing": "keep_running",
        "enrichment_strategy": "ship",
    }  # fmt: skip
    assert page.locator('tr[data-key="enrichment_strategy"] .dec').inner_text() == "Ship: hybrid"
    page.screenshot(path=str(shots / "web_list.png"))

    page.click("text=Status")  # sortable by clicking a header
    assert "sort=status" in page.url
    page.goto(server + "/")
    page.click('a[href="/experiments/checkout_button"]')
    page.wait_for_url("**/experiments/checkout_button")
    assert page.locator('section[data-decision="ship"] .badge .d').inner_text() == "Ship"
    assert page.locator("svg.forest").count() == 1 and page.locator("svg.lift").count() >= 3
    assert page.locator("#history tr[data-run]").count() >= 3
    page.screenshot(path=str(shots / "web_experiment.png"))
    page.locator("#report").scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "web_report.png"))
    page.locator("#history").scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "web_history_audit.png"))


def test_rollback_with_a_write_token_then_signed_out_is_refused(
    page: Any, server: str, shots: Path, web_engine: Engine, tokens: dict[str, str]
) -> None:
    key = "checkout_button"
    before = config_row(web_engine, key)
    assert before["promoted_variant_key"] == "green"  # auto-promoted by the demo's ship
    page.goto(f"{server}/experiments/{key}")
    page.click("text=Sign in")
    page.fill("#token", tokens["write"])
    page.screenshot(path=str(shots / "web_sign_in.png"))
    page.click("button:has-text('Sign in')")
    page.wait_for_url(f"**/experiments/{key}")
    assert page.locator("[data-user]").get_attribute("data-user") == "alice"
    cookie = next(c for c in page.context.cookies() if c["name"] == "abflow_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    rollback = page.locator('form[data-action="rollback"]')
    rollback.locator('input[name="reason"]').fill("browser test")
    rollback.locator("button").click()
    page.wait_for_selector('[data-flash="ok"]')
    assert "rolled back 'green' to the weighted split" in page.locator(".flash").inner_text()
    after = config_row(web_engine, key)
    assert after["version"] == before["version"] + 1
    assert after["promoted_variant_key"] is None and after["pinned_by"] == "alice"
    last = after["audit"][-1]
    assert (last["action"], last["actor"], last["reason"]) == ("rollback", "alice", "browser test")
    assert page.locator('#promotions tr[data-action="rollback"][data-actor="alice"]').count() == 1
    page.locator("#actions").scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "web_rolled_back.png"))

    page.click("button:has-text('Sign out')")
    page.goto(f"{server}/experiments/{key}")
    assert page.locator("[data-user]").count() == 0
    page.locator('form[data-action="rollback"] button').click()
    assert page.locator("[data-error]").get_attribute("data-error") == "401"
    assert "Sign in with a write token" in page.inner_text("main")
    assert page.get_attribute("main a[href^='/login']", "href") == (
        f"/login?next=/experiments/{key}"
    )
    page.screenshot(path=str(shots / "web_refused.png"))
    assert config_row(web_engine, key)["version"] == after["version"]


def test_chromium_is_debians(browser: Any) -> None:
    """The browser really is the system chromium the flags were measured with."""
    assert shutil.which("chromium") or Path(CHROMIUM).exists()
    assert browser.version.split(".")[0].isdigit()
