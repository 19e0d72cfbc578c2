"""Bearer tokens, signed session cookies and CSRF tokens of the web app.

* API writes take `Authorization: Bearer <token>` only (never the cookie, so a cross-site form
  can never act through them); API reads also accept the session cookie.
* The browser signs in once with a token: the session cookie (HttpOnly, SameSite=Strict) holds
  the token's name and hash fingerprint, never the token, signed with HMAC-SHA256. Every request
  checks that this token is still live, so a revoked token ends its sessions too.
* Each session has a random nonce; its CSRF token is HMAC(key, nonce), placed in every form and
  checked on every POST together with the Origin header when the browser sends one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Engine

from abflow.warehouse.web_tokens import TokenInfo, hash_token, session_token, verify_token

SESSION_COOKIE = "abflow_session"
FLASH_COOKIE = "abflow_flash"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """HMAC-SHA256 signing of small JSON payloads (cookies) and of CSRF tokens."""

    def __init__(self, key: str | None) -> None:
        self._key = (key or secrets.token_hex(32)).encode("utf-8")

    def _mac(self, purpose: str, data: bytes) -> bytes:
        return hmac.new(self._key, purpose.encode() + b"\x00" + data, hashlib.sha256).digest()

    def dumps(self, purpose: str, payload: dict[str, Any]) -> str:
        """payload as `base64(json).base64(mac)`."""
        data = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8")
        return f"{_b64(data)}.{_b64(self._mac(purpose, data))}"

    def loads(self, purpose: str, value: str | None) -> dict[str, Any] | None:
        """The payload when the signature is good, else None."""
        if not value or value.count(".") != 1 or len(value) > 4096:
            return None
        body, mac = value.split(".")
        try:
            data, given = _unb64(body), _unb64(mac)
        except (ValueError, TypeError):
            return None
        if not hmac.compare_digest(given, self._mac(purpose, data)):
            return None
        try:
            payload = json.loads(data)
        except ValueError:
            return None
        return payload if isinstance(payload, dict) else None

    def csrf(self, nonce: str) -> str:
        """The CSRF token of a session nonce."""
        return _b64(self._mac("csrf", nonce.encode("utf-8")))

    def check_csrf(self, nonce: str, given: str | None) -> bool:
        """Whether a submitted CSRF token belongs to this session."""
        return bool(given) and hmac.compare_digest(self.csrf(nonce), str(given))


@dataclass(frozen=True)
class Session:
    """A browser session: a nonce, and the token it signed in with (name + fingerprint)."""

    nonce: str
    expires: float
    name: str | None = None
    fingerprint: str | None = None
    is_new: bool = False

    @classmethod
    def fresh(cls, hours: float) -> Session:
        """An anonymous session with a new nonce (set as a cookie on the response)."""
        return cls(nonce=secrets.token_urlsafe(18), expires=time.time() + hours * 3600, is_new=True)

    def signed_in(self, token: TokenInfo, hours: float) -> Session:
        """A new session (new nonce: no fixation) for this token."""
        return Session(
            nonce=secrets.token_urlsafe(18),
            expires=time.time() + hours * 3600,
            name=token.name,
            fingerprint=token.fingerprint,
            is_new=True,
        )

    def to_payload(self) -> dict[str, Any]:
        """What the cookie carries."""
        return {"n": self.nonce, "e": int(self.expires), "t": self.name, "f": self.fingerprint}

    @classmethod
    def from_payload(cls, payload: dict[str, Any] | None) -> Session | None:
        """A valid, unexpired session, or None."""
        if not payload or not isinstance(payload.get("n"), str):
            return None
        try:
            expires = float(payload.get("e", 0))
        except (TypeError, ValueError):
            return None
        if expires < time.time():
            return None
        name, fp = payload.get("t"), payload.get("f")
        if not (isinstance(name, str) and isinstance(fp, str)):
            name = fp = None
        return cls(nonce=payload["n"], expires=expires, name=name, fingerprint=fp)

    def renewed(self) -> Session:
        """The same session marked to be written again."""
        return replace(self, is_new=True)


class TokenAuthority:
    """Checks tokens against web_tokens, reusing each answer for `ttl` seconds.

    The reuse bounds the cost of an authenticated request to a dictionary lookup; a revocation
    made by another process is honoured within `ttl` seconds.
    """

    def __init__(self, engine: Engine, ttl: float, max_entries: int = 10_000) -> None:
        self._engine = engine
        self._ttl = ttl
        self._max = max_entries
        self._cache: dict[tuple[str, ...], tuple[float, TokenInfo | None]] = {}
        self._lock = threading.Lock()

    def _cached(
        self, key: tuple[str, ...], load: Callable[[], TokenInfo | None]
    ) -> TokenInfo | None:
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        value = load()
        with self._lock:
            if len(self._cache) >= self._max:
                self._cache.clear()
            self._cache[key] = (now + self._ttl, value)
        return value

    def peek_bearer(self, token: str) -> tuple[bool, TokenInfo | None]:
        """(cached, owner) without touching the database."""
        hit = self._cache.get(("bearer", hash_token(token)))
        if hit is None or hit[0] <= time.monotonic():
            return False, None
        return True, hit[1]

    def bearer(self, token: str) -> TokenInfo | None:
        """The live token's owner and scope, or None."""

        def load() -> TokenInfo | None:
            with self._engine.begin() as conn:
                return verify_token(conn, token)

        # Keyed by hash: the cache never holds the token itself.
        return self._cached(("bearer", hash_token(token)), load)

    def session(self, session: Session) -> TokenInfo | None:
        """The live token a signed-in session belongs to, or None (signed out or revoked)."""
        if not session.name or not session.fingerprint:
            return None
        name, fp = session.name, session.fingerprint

        def load() -> TokenInfo | None:
            with self._engine.connect() as conn:
                return session_token(conn, name, fp)

        return self._cached(("session", name, fp), load)

    def forget(self) -> None:
        """Drop every cached answer (tests; after a revocation in this process)."""
        with self._lock:
            self._cache.clear()
