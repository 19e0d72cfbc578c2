"""The HTML dashboard without a browser: sign-in, cookies, CSRF, list, filter, sort, pages."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from abflow.definitions import Experiment
from abflow.settings import Settings
from abflow.web.security import SESSION_COOKIE
from tests.conftest import copy_experiment
from tests.web.conftest import config_row, make_app


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def _sign_in(client: TestClient, token: str, next_: str = "/") -> None:
    page = client.get("/login")
    r = client.post(
        "/login", data={"csrf": _csrf(page.text), "token": token, "next": next_},
        follow_redirects=False,
    )  # fmt: skip
    assert r.status_code == 303 and r.headers["location"] == next_


def test_pages_need_sign_in_and_cookies_are_strict(
    client: TestClient, tokens: dict[str, str]
) -> None:
    r = client.get("/experiments/checkout_button", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2Fexperiments%2Fcheckout_button"
    login = client.get(r.headers["location"])
    assert login.status_code == 200 and 'type="password"' in login.text
    bad = client.post("/login", data={"csrf": _csrf(login.text), "token": "abf_nope" * 4})
    assert bad.status_code == 401 and "not valid" in bad.text
    r = client.post(
        "/login",
        data={"csrf": _csrf(bad.text), "token": tokens["read"], "next": "//evil.example/"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/"  # never off-site
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert tokens["read"] not in cookie
    home = client.get("/")
    assert home.status_code == 200 and 'data-user="bob-reader"' in home.text


def test_list_filter_and_sort(client: TestClient, tokens: dict[str, str]) -> None:
    _sign_in(client, tokens["read"])
    html = client.get("/").text
    rows = dict(re.findall(r'<tr data-key="([a-z0-9_]+)" data-decision="([a-z_]*)"', html))
    assert {k: rows[k] for k in ("checkout_button", "followup_timing", "enrichment_strategy")} == {
        "checkout_button": "ship", "followup_timing": "keep_running",
        "enrichment_strategy": "ship",
    }  # fmt: skip
    by_units = client.get("/", params={"sort": "units", "order": "desc"}).text
    keys = re.findall(r'<tr data-key="([a-z0-9_]+)"', by_units)
    assert keys.index("checkout_button") < keys.index("followup_timing")  # more units first
    assert 'aria-sort="descending"' in by_units
    drafts = client.get("/", params={"status": "draft"}).text
    assert (
        'data-key="checkout_button"' not in drafts and "No experiments with status draft" in drafts
    )
    # unknown values fall back instead of failing
    assert client.get("/", params={"sort": "x';--", "status": "nope"}).status_code == 200


def test_signed_in_browser_reads_the_api_but_cannot_write_through_it(
    client: TestClient, tokens: dict[str, str]
) -> None:
    _sign_in(client, tokens["write"])
    assert client.get("/api/experiments/followup_timing").status_code == 200
    r = client.get("/api/experiments/followup_timing/report")
    assert r.status_code == 200 and "<svg" in r.text
    r = client.post("/api/experiments/followup_timing/unpin")
    assert r.status_code == 401  # the cookie never authorises a write


def test_experiment_page_shows_report_history_and_audit(
    client: TestClient, tokens: dict[str, str]
) -> None:
    _sign_in(client, tokens["read"])
    r = client.get("/experiments/checkout_button")
    assert r.status_code == 200
    html = r.text
    assert 'data-decision="ship"' in html and '<svg class="forest"' in html  # the report
    assert html.count("<tr data-run=") >= 3  # run history
    assert 'data-actor="auto"' in html  # the auto-promotion in the audit
    assert "<script" not in html.lower()
    assert "Your token has read scope" in html
    assert r.headers["content-security-policy"].startswith("default-src 'none'")
    assert client.get("/experiments/nope").status_code == 404


def test_actions_need_a_write_session_and_csrf(
    web_settings: Settings,
    web_engine: Engine,
    web_demo: dict[str, Experiment],
    tokens: dict[str, str],
) -> None:
    from tests.conftest import analyse
    from tests.web.conftest import write_run

    e = copy_experiment(web_engine, web_demo["checkout_button"], "page_actions")
    write_run(web_engine, e, analyse(web_engine, e))  # auto-promotes green
    app: FastAPI = make_app(web_settings, web_engine, public_read=True)
    with TestClient(app) as c:
        page = c.get("/experiments/page_actions")
        assert "Sign in with a write token to act" in page.text
        v0 = config_row(web_engine, "page_actions")["version"]
        # Not signed in: refused.
        r = c.post("/experiments/page_actions/rollback", data={"csrf": _csrf(page.text)})
        assert r.status_code == 401 and "Sign in" in r.text
        # Read token: refused.
        _sign_in(c, tokens["read"])
        page = c.get("/experiments/page_actions")
        r = c.post("/experiments/page_actions/rollback", data={"csrf": _csrf(page.text)})
        assert r.status_code == 403
        # Write token, but no or a foreign CSRF token / another site's Origin: refused.
        _sign_in(c, tokens["write"])
        page = c.get("/experiments/page_actions")
        assert c.post("/experiments/page_actions/rollback", data={"reason": "x"}).status_code == 403
        assert c.post("/experiments/page_actions/rollback",
                      data={"csrf": "forged"}).status_code == 403  # fmt: skip
        r = c.post("/experiments/page_actions/rollback", data={"csrf": _csrf(page.text)},
                   headers={"Origin": "http://evil.example"})  # fmt: skip
        assert r.status_code == 403
        r = c.post("/experiments/page_actions/rollback", data={"csrf": _csrf(page.text)},
                   headers={"Sec-Fetch-Site": "cross-site"})  # fmt: skip
        assert r.status_code == 403
        assert config_row(web_engine, "page_actions")["version"] == v0
        # The real thing: one version step, audited with the token's name, shown after redirect.
        r = c.post(
            "/experiments/page_actions/rollback",
            data={"csrf": _csrf(page.text), "reason": "page test"}, follow_redirects=False,
        )  # fmt: skip
        assert r.status_code == 303 and r.headers["location"] == "/experiments/page_actions"
        after = c.get("/experiments/page_actions")
        assert 'data-flash="ok"' in after.text and "rolled back" in after.text
        cfg = config_row(web_engine, "page_actions")
        assert cfg["version"] == v0 + 1 and cfg["promoted_variant_key"] is None
        assert (cfg["audit"][-1]["actor"], cfg["audit"][-1]["reason"]) == ("alice", "page test")
        # A refusal comes back as a message, not a change.
        r = c.post("/experiments/page_actions/rollback", data={"csrf": _csrf(after.text)})
        assert r.status_code == 200 and 'data-flash="error"' in r.text
        assert "nothing to roll back" in r.text
        assert config_row(web_engine, "page_actions")["version"] == v0 + 1
        # Promote with a reason, then stop and start.
        r = c.post("/experiments/page_actions/promote",
                   data={"csrf": _csrf(r.text), "variant": "green", "reason": "ok"})  # fmt: skip
        assert config_row(web_engine, "page_actions")["promoted_variant_key"] == "green"
        r = c.post("/experiments/page_actions/status",
                   data={"csrf": _csrf(r.text), "status": "stopped"})  # fmt: skip
        assert config_row(web_engine, "page_actions")["status"] == "stopped"
        assert "Start experiment" in r.text
        # Signing out ends the session: the next action is refused.
        r = c.post("/logout", data={"csrf": _csrf(r.text)}, follow_redirects=False)
        assert r.status_code == 303
        page = c.get("/experiments/page_actions")
        before = config_row(web_engine, "page_actions")["version"]
        r = c.post("/experiments/page_actions/unpin", data={"csrf": _csrf(page.text)})
        assert r.status_code == 401
        assert config_row(web_engine, "page_actions")["version"] == before


@pytest.mark.parametrize(
    "target", ["//evil.example/", "/\t/evil.example/", "https://evil.example/", "/\\evil", ""]
)
def test_sign_in_never_redirects_off_site(
    client: TestClient, tokens: dict[str, str], target: str
) -> None:
    page = client.get("/login")
    r = client.post(
        "/login", data={"csrf": _csrf(page.text), "token": tokens["read"], "next": target},
        follow_redirects=False,
    )  # fmt: skip
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_tampered_session_is_anonymous(client: TestClient, tokens: dict[str, str]) -> None:
    _sign_in(client, tokens["write"])
    value = client.cookies[SESSION_COOKIE]
    body, mac = value.split(".")
    client.cookies.set(SESSION_COOKIE, body + "." + mac[:-2] + ("AA" if mac[-2:] != "AA" else "BB"))
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
