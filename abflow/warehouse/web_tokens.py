"""Bearer tokens of the web app (`web_tokens`) and the log of web writes (`web_audit`).

A token is `abf_` + 43 URL-safe characters (256 random bits), printed once by `abflow token
create`; the table keeps only its SHA-256, so a leaked table does not leak tokens. Write scope
implies read.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

Scope = Literal["read", "write"]
SCOPES: tuple[Scope, ...] = ("read", "write")
TOKEN_PREFIX = "abf_"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
# A token string we could have issued: bounded length, URL-safe alphabet.
_TOKEN_SHAPE = re.compile(r"^abf_[A-Za-z0-9_-]{20,100}$")


class TokenError(ValueError):
    """A token cannot be created or revoked; the message is one line."""


@dataclass(frozen=True)
class TokenInfo:
    """Who a valid token belongs to and what it may do."""

    name: str
    scope: Scope
    fingerprint: str  # the first 16 hex digits of the hash: sessions remember which token

    @property
    def can_write(self) -> bool:
        """Write scope (which includes read)."""
        return self.scope == "write"


def hash_token(token: str) -> str:
    """Hex SHA-256 of a token string."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random token string."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def check_name(name: str) -> str:
    """The name, or TokenError saying what a name may contain."""
    if not NAME_PATTERN.match(name):
        raise TokenError(
            f"token name {name!r}: 1-64 characters, letters, digits and _ . @ - "
            "(starting with a letter or digit)"
        )
    return name


def create_token(conn: Connection, name: str, scope: str) -> str:
    """Store a new token for `name` and return the token string (shown once, never stored)."""
    check_name(name)
    if scope not in SCOPES:
        raise TokenError(f"--scope: must be read or write, got {scope!r}")
    token = new_token()
    try:
        with conn.begin_nested():
            conn.execute(
                text(
                    "insert into web_tokens (name, scope, token_hash, token_prefix)"
                    " values (:n, :s, :h, :p)"
                ),
                {"n": name, "s": scope, "h": hash_token(token), "p": token[:8]},
            )
    except IntegrityError:
        raise TokenError(
            f"a live token named '{name}' exists; revoke it first (`abflow token revoke {name}`)"
        ) from None
    return token


def list_tokens(conn: Connection, *, include_revoked: bool = True) -> list[dict[str, Any]]:
    """Token metadata (never hashes), live first, then by name and creation."""
    rows = conn.execute(
        text(
            "select name, scope, token_prefix, created_at, created_by, last_used_at, revoked_at,"
            " revoked_by from web_tokens where cast(:all as boolean) or revoked_at is null"
            " order by revoked_at is not null, name, created_at"
        ),
        {"all": include_revoked},
    ).mappings()
    return [dict(r) for r in rows]


def revoke_token(conn: Connection, name: str, *, by: str | None = None) -> datetime:
    """Revoke the live token of `name`; TokenError when there is none."""
    at: datetime | None = conn.execute(
        text(
            "update web_tokens set revoked_at = now(), revoked_by = coalesce(:by, session_user)"
            " where name = :n and revoked_at is null returning revoked_at"
        ),
        {"n": name, "by": by},
    ).scalar()
    if at is None:
        raise TokenError(f"no live token named '{name}'")
    return at


def verify_token(conn: Connection, token: str) -> TokenInfo | None:
    """The live token's owner and scope, or None (unknown, revoked or malformed).

    Also stamps last_used_at, at most once a minute per token.
    """
    if not _TOKEN_SHAPE.match(token):
        return None
    digest = hash_token(token)
    row = conn.execute(
        text("select name, scope from web_tokens where token_hash = :h and revoked_at is null"),
        {"h": digest},
    ).first()
    if row is None:
        return None
    conn.execute(
        text(
            "update web_tokens set last_used_at = now() where token_hash = :h"
            " and (last_used_at is null or last_used_at < now() - interval '1 minute')"
        ),
        {"h": digest},
    )
    return TokenInfo(name=row.name, scope=row.scope, fingerprint=digest[:16])


def session_token(conn: Connection, name: str, fingerprint: str) -> TokenInfo | None:
    """The live token a browser session signed in with (same name, same hash), or None."""
    if not re.fullmatch(r"[0-9a-f]{16}", fingerprint):
        return None
    row = conn.execute(
        text(
            "select scope from web_tokens where name = :n and revoked_at is null"
            " and left(token_hash, 16) = :f"
        ),
        {"n": name, "f": fingerprint},
    ).first()
    return None if row is None else TokenInfo(name=name, scope=row.scope, fingerprint=fingerprint)


def audit(
    conn: Connection,
    token_name: str,
    action: str,
    experiment_key: str | None,
    outcome: Literal["ok", "refused"],
    detail: str | None = None,
) -> None:
    """Append one web write to web_audit."""
    conn.execute(
        text(
            "insert into web_audit (token_name, action, experiment_key, outcome, detail)"
            " values (:t, :a, :k, :o, :d)"
        ),
        {"t": token_name, "a": action, "k": experiment_key, "o": outcome,
         "d": None if detail is None else detail[:2000]},
    )  # fmt: skip
