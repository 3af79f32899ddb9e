"""The HTTP request and response shapes shared by the raw server and the ASGI adapter."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl

__all__ = ["HttpResponse", "Request", "parse_query"]


@dataclass(slots=True)
class Request:
    """One HTTP request as the engine sees it.

    ``headers`` maps lower-case names to values; a repeated header's values are joined
    with ", ". ``query`` keeps the last value of a repeated parameter, as Node does.
    """

    method: str
    url: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""
    remote_address: tuple[str, int] | None = None
    secure: bool = False
    #: True for a WebSocket upgrade request.
    upgrade: bool = False
    #: Set by the HTTP layer when the body passed ``max_http_buffer_size`` (it is not read).
    body_too_large: bool = False

    @property
    def origin(self) -> str | None:
        return self.headers.get("origin")


@dataclass(slots=True)
class HttpResponse:
    """A complete response, as returned by an application's HTTP handler."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def parse_query(raw: str) -> dict[str, str]:
    return dict(parse_qsl(raw, keep_blank_values=True))
