"""Who may use the dashboard, and proof that a POST comes from its own form.

**Credentials** come from the environment only (never from the command line, where ``ps``
shows them) and are never printed or logged:

* ``AGENDA_DECL_DASHBOARD_TOKEN``: every request carries ``Authorization: Bearer <token>``,
  or HTTP basic auth with the token as the password (any user name), which a browser asks for;
* ``AGENDA_DECL_DASHBOARD_USER`` and ``AGENDA_DECL_DASHBOARD_PASSWORD``: HTTP basic auth.

Bound to a loopback address the dashboard needs none (only local users reach it); bound to
any other address it refuses to start without them. When they are set they are required
whatever the address.

**CSRF**: every action is a POST carrying a token that only the dashboard's own pages hold:
a random value in a cookie (``SameSite=Strict``, ``HttpOnly``) and, in each form, its HMAC
under a secret made at process start. Another site can neither read the cookie nor compute
the HMAC, so a forged POST lacks the token and is refused with 403. A restart makes a new
secret: forms of the old process are refused too (reload the page).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import os
import secrets
from collections.abc import Mapping

import attrs

__all__ = [
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "PASSWORD_ENV",
    "TOKEN_ENV",
    "USER_ENV",
    "Credentials",
    "CredentialsError",
    "CsrfGuard",
    "check_binding",
    "credentials_from_env",
    "is_loopback",
]

TOKEN_ENV = "AGENDA_DECL_DASHBOARD_TOKEN"
USER_ENV = "AGENDA_DECL_DASHBOARD_USER"
PASSWORD_ENV = "AGENDA_DECL_DASHBOARD_PASSWORD"

CSRF_COOKIE = "agenda_decl_csrf"
CSRF_FIELD = "csrf_token"


class CredentialsError(ValueError):
    """The credentials in the environment are incomplete, or missing where they are needed.
    The message names the variables, never their values."""


@attrs.define(frozen=True, repr=False)
class Credentials:
    """What a request must present: a token, or a user name and password (or nothing)."""

    token: str | None = None
    user: str | None = None
    password: str | None = None

    def __repr__(self) -> str:  # never the values, even in a traceback's locals
        return f"Credentials(token={'set' if self.token else 'unset'}, " \
               f"user={'set' if self.user else 'unset'})"

    @property
    def required(self) -> bool:
        return bool(self.token or self.user)

    def who(self, authorization: str | None) -> str | None:
        """The user an ``Authorization`` header proves (``token`` for the token), None when it
        proves nothing. With no credentials configured, everyone is ``local``."""
        if not self.required:
            return "local"
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() == "bearer" and self.token:
            return "token" if _same(value.strip(), self.token) else None
        if scheme.lower() != "basic":
            return None
        user, password = _basic(value.strip())
        if password is None:
            return None
        if self.token and _same(password, self.token):
            return user or "token"
        if self.user and self.password is not None and _same(user or "", self.user) \
                and _same(password, self.password):
            return self.user
        return None


def credentials_from_env(environ: Mapping[str, str] | None = None) -> Credentials:
    env = os.environ if environ is None else environ
    token = env.get(TOKEN_ENV) or None
    user, password = env.get(USER_ENV) or None, env.get(PASSWORD_ENV) or None
    if bool(user) != bool(password):
        raise CredentialsError(f"set both {USER_ENV} and {PASSWORD_ENV} for basic auth "
                               "(only one of them is set)")
    return Credentials(token=token, user=user, password=password)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is an address only this machine reaches (127.0.0.0/8, ::1,
    localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_binding(host: str, credentials: Credentials) -> None:
    """Refuse to serve on a non-loopback ``host`` without credentials."""
    if not is_loopback(host) and not credentials.required:
        raise CredentialsError(
            f"the dashboard on {host} (not a loopback address) needs credentials: set "
            f"{TOKEN_ENV}, or {USER_ENV} and {PASSWORD_ENV}, in the environment")


class CsrfGuard:
    """Signed double submit (module docstring), with a secret of this process."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_urlsafe(32)

    def token_for(self, nonce: str) -> str:
        return hmac.new(self._secret, nonce.encode(), hashlib.sha256).hexdigest()

    def valid(self, nonce: str | None, token: str | None) -> bool:
        if not nonce or not token:
            return False
        return hmac.compare_digest(self.token_for(nonce), token)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _basic(value: str) -> tuple[str | None, str | None]:
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else (None, None)
