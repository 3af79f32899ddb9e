"""JWT authentication of Socket.IO handshakes (PyJWT), and development tokens."""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt

from .config import Config

if TYPE_CHECKING:
    from jwt.types import Options

logger = logging.getLogger(__name__)

__all__ = ["AuthError", "Authenticator", "Identity", "extract_token"]

MAX_TOKEN_LENGTH = 8192


class AuthError(Exception):
    """The token is missing or not acceptable. The reason is for logs only."""


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str
    username: str
    #: The token's ``exp`` (Unix seconds): the socket is disconnected then (plus leeway).
    expires_at: float | None = None


def extract_token(auth: Any, headers: dict[str, str]) -> str | None:
    """``auth.token`` from the handshake, else ``Authorization: Bearer <token>``."""
    if isinstance(auth, dict):
        token = auth.get("token")
        if isinstance(token, str) and token:
            return token
    header = headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


class Authenticator:
    """Verifies tokens with the configured key and pinned algorithms."""

    def __init__(self, config: Config) -> None:
        self.algorithms = list(config.jwt_algorithms)
        self.audience = config.jwt_audience
        self.issuer = config.jwt_issuer
        self.leeway = config.jwt_leeway
        if config.dev_mode:
            # Never logged: whoever reads the logs could sign tokens for any user. The app
            # logs how to get a token from POST /api/dev/token instead. A development fleet
            # (scripts/cluster) gives its nodes one JWT_SECRET, so that a token minted by
            # one node is accepted by the others.
            self._key: str = config.jwt_secret or secrets.token_urlsafe(48)
            self.algorithms = ["HS256"]
        elif config.jwt_secret or config.jwt_public_key:
            self._key = config.jwt_secret or config.jwt_public_key or ""
        else:
            # An empty HMAC key would accept tokens anyone can sign.
            raise ValueError("no JWT key configured and development mode is off")
        self.dev_mode = config.dev_mode

    def verify(self, token: str) -> Identity:
        if len(token) > MAX_TOKEN_LENGTH:
            raise AuthError("token too long")
        options: Options = {"require": ["exp", "sub"], "verify_nbf": True}
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options=options,
            )
        except jwt.PyJWTError as exc:
            raise AuthError(f"{type(exc).__name__}: {exc}") from None
        user_id = claims.get("sub")
        if not isinstance(user_id, str) or not 1 <= len(user_id) <= 128:
            raise AuthError("sub must be a string of 1 to 128 characters")
        username = claims.get("username")
        if not isinstance(username, str) or not username:
            username = user_id
        return Identity(user_id, username[:128], float(claims["exp"]))

    def mint_dev_token(self, user_id: str, username: str, ttl: float = 12 * 3600) -> str:
        """A token for development mode only."""
        if not self.dev_mode:
            raise RuntimeError("development tokens exist only in development mode")
        now = int(time.time())
        claims: dict[str, Any] = {"sub": user_id, "username": username, "iat": now,
                                  "exp": now + int(ttl)}
        if self.audience:
            claims["aud"] = self.audience
        if self.issuer:
            claims["iss"] = self.issuer
        return jwt.encode(claims, self._key, algorithm="HS256")
