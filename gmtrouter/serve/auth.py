"""API keys: an admin key, and user or tenant keys that act only for the users they name.

A key is `gmt_<id>_<secret>`. The id finds the row; the secret is checked against a salted SHA-256 digest.
Keys are 256-bit random tokens, not passwords: no one can guess one or search the space, so a slow hash (scrypt,
bcrypt) would add per-request latency and buy nothing; the salt keeps equal digests from showing up across
databases. The database never holds a usable key. The admin key may also be given in the environment or the
config file (compared in constant time), so that a fresh deployment can create the first keys.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from gmtrouter.serve.store import Store
from gmtrouter.utils.errors import GmtError

PREFIX = "gmt"


@dataclass(frozen=True)
class Principal:
    """Who is calling: an admin, or a key scoped to users (an entry ending in '*' is a tenant's id prefix)."""

    key_id: str
    admin: bool
    users: tuple[str, ...] = ()

    def may_act_as(self, user: str) -> bool:
        if self.admin:
            return True
        return any(user.startswith(p[:-1]) if p.endswith("*") else user == p for p in self.users)

    @property
    def single_user(self) -> str | None:
        """The one user a user key names, used when a request does not name its user."""
        exact = [u for u in self.users if not u.endswith("*")]
        return exact[0] if len(exact) == 1 and len(self.users) == 1 else None


def digest(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode()).hexdigest()


def check_scope(users: Iterable[str], admin: bool) -> list[str]:
    """Validate the users a new key may act for."""
    names = [u.strip() for u in users if u.strip()]
    if not names and not admin:
        raise GmtError("a user key needs at least one user (or 'PREFIX*' for a tenant); or make an admin key")
    for name in names:
        if "*" in name[:-1] or name == "*":
            raise GmtError(f"bad user pattern '{name}': use an exact user id, or a prefix followed by one '*'")
    return names


class KeyRing:
    """Creates, checks and revokes keys; remembers a checked key for `cache_seconds` to spare the database."""

    def __init__(self, store: Store, admin_key: str | None, cache_seconds: float = 10.0) -> None:
        self.store, self.admin_key, self.cache_seconds = store, admin_key, cache_seconds
        self._cache: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    def create(self, users: Iterable[str] = (), admin: bool = False, name: str = "") -> tuple[str, str]:
        """A new key: (key id, the token to hand out once; only its digest is stored)."""
        scope = check_scope(users, admin)
        key_id, secret, salt = secrets.token_hex(8), secrets.token_urlsafe(32), secrets.token_hex(16)
        self.store.add_key(key_id, name, salt, digest(salt, secret), scope, admin)
        return key_id, f"{PREFIX}_{key_id}_{secret}"

    def revoke(self, key_id: str) -> bool:
        done = self.store.revoke_key(key_id)
        with self._lock:
            self._cache = {t: v for t, v in self._cache.items() if v[0].key_id != key_id}
        return done

    def cached(self, token: str) -> Principal | None:
        """The admin, or the principal of a token checked less than `cache_seconds` ago (no database access)."""
        if self.admin_key and hmac.compare_digest(token.encode(), self.admin_key.encode()):
            return Principal("admin", admin=True)
        hit = self._cache.get(token)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        return None

    def authenticate(self, token: str) -> Principal | None:
        """The principal a token stands for, or None when it is unknown, malformed or revoked."""
        hit = self.cached(token)
        if hit is not None:
            return hit
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
            return None
        row = self.store.get_key(parts[1])
        if row is None or row.revoked is not None or not hmac.compare_digest(row.hash, digest(row.salt, parts[2])):
            return None
        principal = Principal(row.id, row.admin, tuple(row.users))
        if self.cache_seconds > 0:
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[token] = (principal, time.monotonic() + self.cache_seconds)
        return principal
