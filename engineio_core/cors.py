"""CORS for the Engine.IO endpoint: which headers to add to a response. Pure logic.

Semantics follow the npm ``cors`` package that Node's engine.io uses for its ``cors``
option, so a configuration moves between the two servers unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["CorsOptions", "same_origin"]

OriginRule = bool | str | re.Pattern[str] | Sequence["str | re.Pattern[str]"] | Callable[
    [str | None], bool
]

_DEFAULT_METHODS = ("GET", "HEAD", "PUT", "PATCH", "POST", "DELETE")


@dataclass(frozen=True, slots=True)
class CorsOptions:
    """CORS configuration.

    ``origin``:
      * ``"*"``: any origin, answered with a literal ``*`` (browsers refuse ``*`` with
        credentials: use ``True`` for that);
      * ``True``: reflect the request's origin;
      * ``False``: no CORS headers at all;
      * a string: always that origin;
      * a compiled regex, or a list of strings and regexes: the request's origin is
        reflected when it matches, otherwise no ``Access-Control-Allow-Origin`` is sent;
      * a callable ``origin -> bool``: reflect when it returns True.
    ``allowed_headers`` None reflects ``Access-Control-Request-Headers`` on preflight.
    ``max_age`` in seconds.
    """

    origin: OriginRule = "*"
    credentials: bool = False
    methods: Sequence[str] = _DEFAULT_METHODS
    allowed_headers: Sequence[str] | None = None
    exposed_headers: Sequence[str] = field(default_factory=tuple)
    max_age: int | None = None

    @property
    def restricts_origins(self) -> bool:
        """True when ``origin`` names the allowed origins (a string other than ``"*"``, a
        list, a regex or a callable); ``"*"``, ``True`` and ``False`` name none."""
        rule = self.origin
        return not (rule is True or rule is False or rule == "*")

    def accepts_origin(self, request_origin: str) -> bool:
        """Whether ``request_origin`` is one of the origins ``origin`` names.

        Always True when no origins are named (see ``restricts_origins``)."""
        rule = self.origin
        if rule is True or rule is False or rule == "*":
            return True
        if isinstance(rule, str):
            return request_origin == rule
        return self._matches(rule, request_origin)

    @staticmethod
    def _matches(rule: OriginRule, request_origin: str) -> bool:
        if isinstance(rule, re.Pattern):
            return rule.search(request_origin) is not None
        if callable(rule):
            return bool(rule(request_origin))
        assert not isinstance(rule, (str, bool))
        return any(
            (r.search(request_origin) is not None) if isinstance(r, re.Pattern)
            else r == request_origin
            for r in rule
        )

    def allowed_origin(self, request_origin: str | None) -> tuple[str | None, bool]:
        """Return (value for Access-Control-Allow-Origin or None, add Vary: Origin)."""
        rule = self.origin
        if rule is False:
            return None, False
        if rule == "*":
            return "*", False
        if isinstance(rule, str):
            return rule, True
        if rule is True:
            return request_origin, True
        if request_origin is None:
            return None, True
        ok = self._matches(rule, request_origin)
        return (request_origin if ok else None), True

    def _origin_headers(self, request_origin: str | None) -> list[tuple[str, str]]:
        value, vary = self.allowed_origin(request_origin)
        headers: list[tuple[str, str]] = []
        if value is not None:
            headers.append(("Access-Control-Allow-Origin", value))
        if vary:
            headers.append(("Vary", "Origin"))
        if value is not None and self.credentials:
            headers.append(("Access-Control-Allow-Credentials", "true"))
        return headers

    def response_headers(self, request_origin: str | None) -> list[tuple[str, str]]:
        """Headers for an actual (non-preflight) response."""
        headers = self._origin_headers(request_origin)
        if self.exposed_headers and any(h[0] == "Access-Control-Allow-Origin" for h in headers):
            headers.append(("Access-Control-Expose-Headers", ",".join(self.exposed_headers)))
        return headers

    def preflight_headers(
        self, request_origin: str | None, request_headers: str | None
    ) -> list[tuple[str, str]]:
        """Headers for the 204 answer to an OPTIONS preflight."""
        headers = self._origin_headers(request_origin)
        if self.origin is False:
            return headers
        headers.append(("Access-Control-Allow-Methods", ",".join(self.methods)))
        if self.allowed_headers is not None:
            if self.allowed_headers:
                headers.append(("Access-Control-Allow-Headers", ",".join(self.allowed_headers)))
        else:
            if request_headers:
                headers.append(("Access-Control-Allow-Headers", request_headers))
            headers.append(("Vary", "Access-Control-Request-Headers"))
        if self.max_age is not None:
            headers.append(("Access-Control-Max-Age", str(self.max_age)))
        return headers


_DEFAULT_PORTS = (":80", ":443")


def same_origin(request_origin: str, host: str | None) -> bool:
    """Whether ``Origin`` names the host the request was sent to (its ``Host`` header).

    The scheme is not compared (a TLS-terminating proxy hides it); default ports are
    ignored on both sides. ``X-Forwarded-Host`` is not trusted: behind a proxy that
    rewrites ``Host``, list the public origin instead.
    """
    if not host:
        return False
    _, sep, authority = request_origin.partition("://")
    if not sep:
        return False  # "null" (sandboxed frames, file: pages) is nobody's origin
    authority = authority.lower()
    host = host.lower()
    for port in _DEFAULT_PORTS:
        authority = authority.removesuffix(port)
        host = host.removesuffix(port)
    return authority == host
