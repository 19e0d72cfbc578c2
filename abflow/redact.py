"""Keep credentials out of every message abflow writes: errors, logs, artifacts, Prefect states.

Two layers: URL passwords (`scheme://user:password@`) and `password=` pairs are masked wherever
they appear, and the secrets of the configured URLs are registered so that they are masked even
where a library quotes them out of their URL (http.client's "nonnumeric port: 'SECRET@host:x'").
`install_log_redaction()` applies the same to every log record of the process.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from typing import Any
from urllib.parse import unquote

MASK = "***"
# A short "secret" (e.g. a one-letter password in a test URL) would mask unrelated text.
_MIN_SECRET = 4
_URL_PASSWORD = re.compile(
    r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/?#@\s'\"]*:)(?P<secret>[^\s'\"]*)@"
)
_KEY_VALUE = re.compile(
    r"(?P<head>\b(?:password|passwd|pwd)\s*=\s*)(?P<secret>[^\s&'\",;]+)",
    re.IGNORECASE,
)
_secrets: set[str] = set()
_lock = threading.Lock()
_installed = False


def register_secret(value: str | None) -> None:
    """Mask this value (and its URL-decoded form) in everything redact() sees from now on."""
    if not value:
        return
    with _lock:
        for form in {value, unquote(value)}:
            if len(form) >= _MIN_SECRET:
                _secrets.add(form)


def register_url(url: str | None) -> None:
    """Register the credentials of a URL: its password, and for http(s) a bare user token.

    Parsed by hand: the URL may be malformed (that is often why it ends up in an error).
    """
    if not url or "://" not in url:
        return
    scheme, _, rest = url.partition("://")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" not in authority:
        return
    userinfo = authority.rpartition("@")[0]
    user, colon, password = userinfo.partition(":")
    if colon:
        register_secret(password)
    elif scheme.lower() in {"http", "https"}:
        register_secret(user)  # http://TOKEN@host: the user part is the credential


def redact(text: Any) -> str:
    """The text with registered secrets, URL passwords and password=… values masked."""
    out = str(text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        out = out.replace(secret, MASK)
    out = _URL_PASSWORD.sub(lambda m: m["head"] + MASK + "@", out)
    return _KEY_VALUE.sub(lambda m: m["head"] + MASK, out)


def one_line(exc: BaseException) -> str:
    """`Type: first line of the message`, redacted (what abflow stores and prints for an error)."""
    message = next((line for line in str(exc).splitlines() if line.strip()), "")
    return redact(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)


def install_log_redaction() -> None:
    """Redact every log record created in this process from now on (message and traceback)."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is logging's business, not ours
            return record
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            # Formatters reuse exc_text when it is set, so the traceback is printed redacted.
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)))
            record.exc_text = record.exc_text.rstrip("\n")
        return record

    logging.setLogRecordFactory(factory)
