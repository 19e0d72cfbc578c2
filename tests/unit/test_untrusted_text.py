"""Untrusted text, pure: credentials masked, markdown made inert, settings errors named."""

from __future__ import annotations

import logging

import pytest
from markdown_it import MarkdownIt

from abflow.redact import install_log_redaction, one_line, redact, register_secret, register_url
from abflow.summary import md


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("connect postgresql+psycopg://ops:hunter22@db:5432/x failed", "hunter22"),
        ("url 'http://pg:PUSHSECRET@127.0.0.1:notaport'", "PUSHSECRET"),
        ("dsn host=db user=ops password=hunter22 dbname=x", "hunter22"),
        ("https://h/x?password=hunter22&x=1", "hunter22"),
        ("postgres://u:p@ss:w0rd@db/x", "p@ss:w0rd"),
    ],
)
def test_url_passwords_are_masked_wherever_they_appear(text: str, hidden: str) -> None:
    out = redact(text)
    assert hidden not in out and "***" in out


def test_registered_secrets_are_masked_out_of_their_url() -> None:
    """http.client quotes the password without its scheme: "nonnumeric port: 'SECRET@h:x'"."""
    register_url("http://pg:Quoted0ut@127.0.0.1:notaport")
    register_url("http://T0kenOnly@gateway:9091")
    register_url("postgresql://alice@db/x")  # a user without a password is not a secret
    assert redact("nonnumeric port: 'Quoted0ut@127.0.0.1:notaport'") == (
        "nonnumeric port: '***@127.0.0.1:notaport'"
    )
    assert "T0kenOnly" not in redact("gateway said T0kenOnly")
    assert redact("role alice") == "role alice"


def test_percent_encoded_passwords_are_masked_in_both_forms() -> None:
    register_url("postgresql://ops:Pa%40ss%2Fword@db/x")
    assert redact("saw Pa@ss/word and Pa%40ss%2Fword") == "saw *** and ***"


def test_short_secrets_do_not_mask_ordinary_text() -> None:
    register_secret("a")
    assert redact("a cat") == "a cat"


def test_one_line_is_the_first_non_empty_line_redacted() -> None:
    exc = RuntimeError("\nboom at postgresql://u:Zebra123@h/db\n  detail")
    assert one_line(exc) == "RuntimeError: boom at postgresql://u:***@h/db"


def test_log_records_and_tracebacks_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction()
    log = logging.getLogger("abflow.test")
    try:
        raise ValueError("cannot reach postgresql://u:Trace123@h/db")
    except ValueError:
        log.exception("run failed for %s", "postgresql://u:Args4567@h/db")
    (record,) = [r for r in caplog.records if r.name == "abflow.test"]
    text = logging.Formatter().format(record)
    assert "Trace123" not in text and "Args4567" not in text
    assert "postgresql://u:***@h/db" in text


# --- markdown -----------------------------------------------------------------------------------

HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[click](javascript:alert(1))",
    "| a | b |\n|---|---|",
    "# heading\n\n- item",
    "**bold** _it_ `code` ~~s~~ \\*",
    "&lt;already escaped&gt; &amp;",
    "![img](http://x/y.png)",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_md_makes_warehouse_strings_inert(value: str) -> None:
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(md(value))
    for tag in ("<script", "<img", "<a ", "<table", "<h1", "<li", "<strong", "<em", "<code"):
        assert tag not in html, (value, html)
    # and the reader sees what the warehouse holds (newlines folded into spaces)
    text = MarkdownIt("commonmark", {"html": False}).render(md(value))
    import html as html_lib
    import re

    shown = html_lib.unescape(re.sub(r"<[^>]+>", "", text)).strip()
    assert shown == " ".join(value.split())


def test_settings_repr_leaves_the_urls_out() -> None:
    from abflow.settings import Settings

    s = Settings(
        database_url="postgresql://u:ReprSecret1@h/db",
        pushgateway_url="http://p:ReprSecret2@g:9091",
    )
    assert "ReprSecret" not in repr(s) and "ReprSecret" not in str(s)
