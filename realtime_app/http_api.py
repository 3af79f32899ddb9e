"""The gateway's HTTP side: service API, health, metrics, the dev token and the web page."""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from engineio_core import CorsOptions, HttpResponse, Request
from socketio_core.client_bundle import PACKAGED_DIR as CLIENT_PACKAGED_DIR

from .auth import Authenticator
from .config import Config
from .gateway import Gateway, iso_now
from .store import StoreUnavailable

logger = logging.getLogger(__name__)

__all__ = ["HttpApi"]

STATIC_DIR = Path(__file__).parent / "static"
USER_ID = re.compile(r"^[^\s/]{1,128}$")
MAX_RECIPIENTS = 10_000

Handler = Callable[[Request, "dict[str, str]"], Awaitable[HttpResponse]]

#: The page's policy. 'unsafe-eval': the page's templates are in the HTML and Vue's
#: in-browser compiler turns them into functions with ``new Function`` (no build step).
#: Everything else is this origin only; 'self' covers ws:/wss: to it (CSP level 3).
PAGE_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-eval'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
#: Every other answer (JSON, scripts, metrics) is never a document.
API_CSP = "default-src 'none'; frame-ancestors 'none'"
#: On every response of the gateway's HTTP handler (not the engine's /socket.io/ answers).
SECURITY_HEADERS = [
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
]
#: Headers a reverse proxy adds: a request carrying one did not come from this machine's
#: user directly, whatever its peer address.
FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip")


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def json_response(status: int, body: Any) -> HttpResponse:
    return HttpResponse(
        status, [("Content-Type", "application/json"), ("Cache-Control", "no-store")],
        orjson.dumps(body),
    )


def _is_loopback(request: Request) -> bool:
    if not request.remote_address:
        return False
    try:
        return ipaddress.ip_address(request.remote_address[0]).is_loopback
    except ValueError:
        return False


def _is_loopback_host_header(value: str | None) -> bool:
    """``Host`` names this machine: localhost, 127.x.y.z or [::1], with an optional port.

    A page of another site that reaches a loopback port through DNS rebinding sends its
    own name here, as does a reverse proxy that passes the public name on.
    """
    if not value:
        return False
    value = value.strip().lower()
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return False
    else:
        host, colon, port = value.partition(":")
        if colon and not port.isdigit():
            return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _packaged_or(packaged: Path, checkout: Path) -> Path:
    return packaged if packaged.is_file() else checkout


class HttpApi:
    def __init__(self, config: Config, gateway: Gateway, auth: Authenticator) -> None:
        self.config = config
        self.gateway = gateway
        self.auth = auth
        #: The app's check of what the store ping does not cover (adapter, shutdown).
        self.not_ready: Callable[[], str | None] | None = None
        self.cors = CorsOptions(origin=list(config.frontend_urls), credentials=True,
                                methods=("GET", "POST", "PUT", "DELETE"),
                                allowed_headers=("Authorization", "Content-Type"), max_age=600)
        web_dir = Path(config.web_dir) if config.web_dir else Path.cwd() / "web"
        # The copies an installed package ships (see setup.py) first, else web/'s npm.
        self.assets = {
            "/vendor/vue.js": _packaged_or(
                STATIC_DIR / "vendor/vue.esm-browser.prod.js",
                web_dir / "node_modules/vue/dist/vue.esm-browser.prod.js"),
            "/vendor/socket.io.js": _packaged_or(
                CLIENT_PACKAGED_DIR / "socket.io.esm.min.js",
                web_dir / "node_modules/socket.io-client/dist/socket.io.esm.min.js"),
            "/app.js": STATIC_DIR / "app.js",
            "/style.css": STATIC_DIR / "style.css",
            "/": STATIC_DIR / "index.html",
        }
        # (method, path regex) -> (handler, needs the API key)
        self.routes: list[tuple[str, re.Pattern[str], Handler, bool]] = [
            ("GET", re.compile(r"^/healthz$"), self.healthz, False),
            ("GET", re.compile(r"^/readyz$"), self.readyz, False),
            ("GET", re.compile(r"^/metrics$"), self.metrics, False),
            ("GET", re.compile(r"^/stats$"), self.stats, True),
            ("POST", re.compile(r"^/api/notifications$"), self.notifications, True),
            ("PUT", re.compile(r"^/api/follows$"), self.follow, True),
            ("DELETE", re.compile(r"^/api/follows$"), self.unfollow, True),
            ("GET", re.compile(r"^/api/users/(?P<user>[^/]+)/online$"), self.user_online, True),
            ("GET", re.compile(r"^/api/online-users$"), self.online_users, True),
            ("POST", re.compile(r"^/api/dev/token$"), self.dev_token, False),
        ]

    # ------------------------------------------------------------------ dispatch

    async def handle(self, request: Request) -> HttpResponse:
        cors_headers = self.cors.response_headers(request.origin) if request.origin else []
        if request.method == "OPTIONS":
            headers = self.cors.preflight_headers(
                request.origin, request.headers.get("access-control-request-headers"))
            response = HttpResponse(204, [*headers, ("Content-Length", "0")], b"")
            response.headers.extend(SECURITY_HEADERS)
            return response
        try:
            response = await self._route(request)
        except HttpError as exc:
            response = json_response(exc.status, {"error": exc.message})
            if exc.status == 401:
                response.headers.append(("WWW-Authenticate", "Bearer"))
        except StoreUnavailable as exc:
            logger.warning("store unavailable for %s %s: %s", request.method, request.path, exc)
            response = json_response(503, {"error": "Service temporarily unavailable"})
        response.headers.extend(cors_headers)
        response.headers.extend(SECURITY_HEADERS)
        if not any(name == "Content-Security-Policy" for name, _ in response.headers):
            response.headers.append(("Content-Security-Policy", API_CSP))
        if request.method == "HEAD":
            # The GET answer's headers, its length, no body (a body would break the framing).
            if not any(name.lower() == "content-length" for name, _ in response.headers):
                response.headers.append(("Content-Length", str(len(response.body))))
            response.body = b""
        return response

    async def _route(self, request: Request) -> HttpResponse:
        path = request.path
        allowed: list[str] = []
        for method, pattern, handler, needs_key in self.routes:
            match = pattern.match(path)
            if match is None:
                continue
            if method != request.method and not (method == "GET" and request.method == "HEAD"):
                allowed.append(method)
                continue
            if needs_key:
                self._check_key(request)
            return await handler(request, match.groupdict())
        if request.method in ("GET", "HEAD") and path in self.assets:
            return self._asset(path)
        if allowed:
            raise HttpError(405, f"Method not allowed; use {', '.join(sorted(set(allowed)))}")
        raise HttpError(404, "Not found")

    def _check_key(self, request: Request) -> None:
        expected = self.config.api_key
        if expected is None:
            raise HttpError(503, "Service API disabled: set API_KEY")
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise HttpError(401, "Missing API key (Authorization: Bearer <API_KEY>)")
        if not hmac.compare_digest(key.strip().encode(), expected.encode()):
            raise HttpError(403, "Invalid API key")

    @staticmethod
    def _json_body(request: Request) -> dict[str, Any]:
        try:
            body = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            raise HttpError(400, "Malformed JSON body") from None
        if not isinstance(body, dict):
            raise HttpError(400, "The JSON body must be an object")
        return body

    def _asset(self, path: str) -> HttpResponse:
        file = self.assets[path]
        try:
            data = file.read_bytes()
        except OSError:
            if path.startswith("/vendor/"):
                raise HttpError(
                    503, f"{path} is not installed: run `npm ci` in the web/ folder "
                    "(scripts/run does it)") from None
            raise HttpError(404, "Not found") from None
        kind = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".html": "text/html; charset=utf-8"}[file.suffix]
        headers = [("Content-Type", kind), ("Cache-Control", "no-cache")]
        if file.suffix == ".html":
            headers.append(("Content-Security-Policy", PAGE_CSP))
        return HttpResponse(200, headers, data)

    # ------------------------------------------------------------------ health

    async def healthz(self, request: Request, params: dict[str, str]) -> HttpResponse:
        """Liveness: the process answers (restart it if not)."""
        return json_response(200, {"status": "ok", "node": self.gateway.node_id})

    async def readyz(self, request: Request, params: dict[str, str]) -> HttpResponse:
        """Readiness: send this node new clients? Not while it stops, nor while Redis or
        the adapter's subscription is down (a balancer sends them to another node)."""
        node = self.gateway.node_id
        problem = self.readiness_problem()
        if problem is None and not await self.gateway.store.ping():
            problem = "store unreachable"
        if problem is not None:
            return json_response(503, {"status": "unavailable", "error": problem, "node": node})
        return json_response(200, {"status": "ready", "node": node})

    def readiness_problem(self) -> str | None:
        """Why this node is not ready, apart from the store (set by the app)."""
        return self.not_ready() if self.not_ready is not None else None

    async def metrics(self, request: Request, params: dict[str, str]) -> HttpResponse:
        expected = self.config.metrics_token
        if expected is not None:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            # compare_digest: the time taken does not tell how much of the token matched.
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                    given.strip().encode(), expected.encode()):
                raise HttpError(401, "Missing or invalid metrics token "
                                "(Authorization: Bearer <METRICS_TOKEN>)")
        fleet: dict[str, tuple[str, float]] = {}
        # While Redis is away the per-node series still answer.
        with contextlib.suppress(StoreUnavailable):
            fleet["realtime_fleet_online_users"] = (
                "Users online in the whole fleet (shared store: the same on every node)",
                await self.gateway.store.online_count())
        body = self.gateway.metrics.render(fleet).encode()
        return HttpResponse(200, [("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)], body)

    async def stats(self, request: Request, params: dict[str, str]) -> HttpResponse:
        return json_response(200, await self.gateway.stats())

    # ------------------------------------------------------------------ service API

    async def notifications(self, request: Request, params: dict[str, str]) -> HttpResponse:
        body = self._json_body(request)
        kind, message = body.get("type"), body.get("message")
        if not isinstance(kind, str) or not 1 <= len(kind) <= 64:
            raise HttpError(400, "type must be a string of 1 to 64 characters")
        if not isinstance(message, str) or len(message) > 1000:
            raise HttpError(400, "message must be a string of at most 1000 characters")
        if body.get("all") is True:
            user_ids = None
        else:
            user_ids = body.get("userIds")
            if (not isinstance(user_ids, list) or not user_ids
                    or not all(isinstance(u, str) and USER_ID.match(u) for u in user_ids)):
                raise HttpError(400, "give userIds (a non-empty list of user ids) or all: true")
            if len(user_ids) > MAX_RECIPIENTS:
                raise HttpError(400, f"at most {MAX_RECIPIENTS} userIds per request")
            user_ids = list(dict.fromkeys(user_ids))
        delivered, complete = await self.gateway.notify(user_ids, kind, message,
                                                        body.get("data"))
        # deliveredSockets counts the fleet; "complete" is false when a node did not answer
        # the count in time (the notification itself still went to every node).
        return json_response(200, {"success": True, "deliveredSockets": delivered,
                                   "complete": complete, "timestamp": iso_now()})

    def _follow_pair(self, request: Request) -> tuple[str, str]:
        body = self._json_body(request)
        follower, followee = body.get("followerId"), body.get("followeeId")
        for name, value in (("followerId", follower), ("followeeId", followee)):
            if not isinstance(value, str) or not USER_ID.match(value):
                raise HttpError(400, f"{name} must be a user id (1 to 128 characters)")
        if follower == followee:
            raise HttpError(400, "a user cannot follow themselves")
        return str(follower), str(followee)

    async def follow(self, request: Request, params: dict[str, str]) -> HttpResponse:
        follower, followee = self._follow_pair(request)
        created = await self.gateway.store.follow(follower, followee)
        return json_response(200, {"success": True, "created": created})

    async def unfollow(self, request: Request, params: dict[str, str]) -> HttpResponse:
        follower, followee = self._follow_pair(request)
        removed = await self.gateway.store.unfollow(follower, followee)
        return json_response(200, {"success": True, "removed": removed})

    async def user_online(self, request: Request, params: dict[str, str]) -> HttpResponse:
        user = params["user"]
        if not USER_ID.match(user):
            raise HttpError(400, "invalid user id")
        online = await self.gateway.store.is_online(user)
        return json_response(200, {"userId": user, "online": online})

    async def online_users(self, request: Request, params: dict[str, str]) -> HttpResponse:
        users = await self.gateway.store.online_users()
        return json_response(200, {"users": users, "count": len(users)})

    # ------------------------------------------------------------------ development

    async def dev_token(self, request: Request, params: dict[str, str]) -> HttpResponse:
        if not self.auth.dev_mode:
            raise HttpError(404, "Not found")
        if (not _is_loopback(request)
                or not _is_loopback_host_header(request.headers.get("host"))
                or any(name in request.headers for name in FORWARDING_HEADERS)):
            raise HttpError(403, "The development token endpoint answers loopback only")
        body = self._json_body(request)
        user_id = body.get("userId")
        username = body.get("username") or user_id
        if not isinstance(user_id, str) or not USER_ID.match(user_id):
            raise HttpError(400, "userId must be a string of 1 to 128 characters, no spaces")
        if not isinstance(username, str) or not 1 <= len(username) <= 128:
            raise HttpError(400, "username must be a string of 1 to 128 characters")
        token = self.auth.mint_dev_token(user_id, username)
        return json_response(200, {"token": token, "userId": user_id, "username": username})
