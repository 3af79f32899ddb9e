"""The server side of the Socket.IO Admin UI: ``instrument(io)`` speaks @socket.io/admin-ui 0.5.1.

::

    from socketio_core.admin import instrument

    instrument(io, auth={"type": "basic", "username": "admin",
                         "password": "$2b$12$..."},          # a bcrypt hash (or plain text)
               mode="production", serve_ui_at="/admin/",
               ui_dir="node_modules/@socket.io/admin-ui/ui/dist")

The official UI (hosted at https://admin.socket.io or served by this server at
``serve_ui_at``) connects to the ``/admin`` namespace and gets:

* ``config`` (the features it may use), then every 2 s ``server_stats`` from every node;
* in development mode ``all_sockets`` on login and a stream of ``socket_connected``,
  ``socket_updated``, ``socket_disconnected``, ``room_joined``, ``room_left``,
  ``event_received`` and ``event_sent``;
* unless ``read_only``, it may ask for ``emit``, ``join``, ``leave`` and ``_disconnect``,
  which act through the namespace's adapter, so across the fleet with a cluster adapter
  (the events and stats of every node reach the admin sockets of every node the same way).

Nothing here costs anything until ``instrument()`` is called: it hooks in through the
public registration points (connection handlers, ``on_any``/``on_any_outgoing``, adapter
room listeners, engine events, the engine's ``http_handler``) and counts outgoing Engine.IO
packets by giving each session a subclass whose ``send_packet`` counts.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import logging
import mimetypes
import os
import secrets
import socket as _socket_module
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote

import orjson

from engineio_core import HttpResponse, OutgoingPacket, Request, Session

from .adapter import InMemoryAdapter
from .errors import ConnectRefused

if TYPE_CHECKING:
    from .namespace import Namespace
    from .server import Server
    from .socket import Socket

logger = logging.getLogger(__name__)

__all__ = ["UI_VERSION", "AdminInstrumentation", "instrument"]

#: The version of ``@socket.io/admin-ui`` whose protocol this module speaks.
UI_VERSION = "0.5.1"

#: The reference emits ``server_stats`` every 2 s; the UI marks a server unhealthy after 10 s.
STATS_INTERVAL = 2.0

#: Admin logins remembered (the UI reconnects with its ``sessionId`` after a page reload),
#: and for how long (the reference's RedisStore default).
MAX_SESSIONS = 1000
SESSION_TTL = 86400.0

#: bcrypt runs in a thread (tens of ms of CPU each): at most this many at once, and
#: beyond this many waiting an attempt is refused at once, so that guessing passwords
#: cannot queue unbounded work.
BCRYPT_THREADS = 2
MAX_PENDING_LOGINS = 16

_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2x$", "$2y$")

#: Where the UI's built files are looked for when ``ui_dir`` is not given.
_PACKAGED_UI_DIR = Path(__file__).parent / "admin_ui"
_NPM_UI_DIR = Path("node_modules") / "@socket.io" / "admin-ui" / "ui" / "dist"

Handler = Callable[[Request], Awaitable[HttpResponse]]


def _now_iso() -> str:
    """A timestamp as JavaScript's ``JSON.stringify(new Date())`` writes it."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _is_bcrypt_hash(value: str) -> bool:
    return len(value) == 60 and value.startswith(_BCRYPT_PREFIXES)


def _digest(value: Any) -> bytes:
    # Compare digests, not the values: compare_digest would otherwise leak the length.
    return hashlib.sha256(str(value).encode("utf-8", "surrogatepass")).digest()


def _json_safe(value: Any, depth: int = 0) -> Any:
    """``value`` if the parser can send it; otherwise a copy whose unsendable parts are
    replaced by ``"<TypeName>"`` (``socket.data`` may hold any Python object)."""
    try:
        orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
        return value
    except (TypeError, orjson.JSONEncodeError):
        pass
    if depth < 8:
        if isinstance(value, Mapping):
            return {str(k): _json_safe(v, depth + 1) for k, v in value.items()}
        if isinstance(value, (list, tuple, set, frozenset)):
            return [_json_safe(v, depth + 1) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return f"<{type(value).__name__}>"


# ---------------------------------------------------------------------- authentication


class _BasicAuth:
    """The reference's ``{"type": "basic", "username", "password"}``; the password may be a
    bcrypt hash (as the reference requires) or, for development, the plain text."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        if options.get("type") != "basic":
            raise ValueError('auth must be None or {"type": "basic", "username": ..., '
                             '"password": ...}')
        username, password = options.get("username"), options.get("password")
        if not isinstance(username, str) or not isinstance(password, str) or not password:
            raise ValueError("auth needs a username and a non-empty password (strings)")
        self._username = _digest(username)
        self._hash: bytes | None = None
        self._plain: bytes | None = None
        if _is_bcrypt_hash(password):
            try:
                import bcrypt  # noqa: F401  (checked here, used in a thread)
            except ImportError:
                raise RuntimeError(
                    "a bcrypt password hash needs the bcrypt package: "
                    "pip install 'realtime-socketio[admin]'") from None
            self._hash = password.encode()
        else:
            self._plain = _digest(password)
        self._threads = asyncio.Semaphore(BCRYPT_THREADS) if self._hash else None
        self._pending = 0

    async def check(self, username: Any, password: Any) -> bool:
        if not isinstance(username, str) or not isinstance(password, str):
            return False
        user_ok = hmac.compare_digest(_digest(username), self._username)
        if self._plain is not None:
            return hmac.compare_digest(_digest(password), self._plain) and user_ok
        if not user_ok:
            return False
        if self._pending >= MAX_PENDING_LOGINS:
            raise ConnectRefused("too many login attempts, retry later")
        self._pending += 1
        try:
            assert self._threads is not None and self._hash is not None
            async with self._threads:
                return await asyncio.to_thread(_bcrypt_check, password, self._hash)
        finally:
            self._pending -= 1


def _bcrypt_check(password: str, hashed: bytes) -> bool:
    import bcrypt

    try:
        return bool(bcrypt.checkpw(password.encode("utf-8", "surrogatepass")[:72], hashed))
    except ValueError:  # a malformed hash
        return False


class _SessionStore:
    """Admin logins: the id given to the UI after a password login, accepted instead of
    the password until it expires. Bounded: the oldest are forgotten first."""

    def __init__(self) -> None:
        self._expiry: collections.OrderedDict[str, float] = collections.OrderedDict()

    def create(self) -> str:
        session_id = secrets.token_hex(8)
        self._expiry[session_id] = time.monotonic() + SESSION_TTL
        while len(self._expiry) > MAX_SESSIONS:
            self._expiry.popitem(last=False)
        return session_id

    def exists(self, session_id: Any) -> bool:
        if not isinstance(session_id, str):
            return False
        expiry = self._expiry.get(session_id)
        if expiry is None:
            return False
        if expiry < time.monotonic():
            del self._expiry[session_id]
            return False
        return True


# ---------------------------------------------------------------------- counting


class _Counters:
    """Engine.IO messages and their bytes (characters for text) since the last stats."""

    __slots__ = ("bytes_in", "bytes_out", "packets_in", "packets_out")

    def __init__(self) -> None:
        self.packets_in = self.bytes_in = self.packets_out = self.bytes_out = 0


class _EventBuffer:
    """The reference's EventBuffer: counts per (second, type, subType)."""

    MAX_KEYS = 10_000

    def __init__(self) -> None:
        self._buffer: dict[tuple[int, str, str | None], int] = {}

    def push(self, kind: str, sub_type: str | None = None, count: int = 1) -> None:
        key = (int(time.time()) * 1000, kind, sub_type)
        buffer = self._buffer
        if key in buffer:
            buffer[key] += count
        elif len(buffer) < self.MAX_KEYS:
            buffer[key] = count

    def values_and_clear(self) -> list[dict[str, Any]]:
        values: list[dict[str, Any]] = []
        for (timestamp, kind, sub_type), count in self._buffer.items():
            entry: dict[str, Any] = {"timestamp": timestamp, "type": kind}
            if sub_type is not None:
                entry["subType"] = sub_type
            entry["count"] = count
            values.append(entry)
        self._buffer.clear()
        return values


def _counting_session_class(counters: _Counters) -> type[Session]:
    """A Session subclass (same slots, so ``session.__class__`` can be swapped) that counts
    what it sends: the uninstrumented hot path keeps the plain ``Session.send_packet``."""
    send_packet = Session.send_packet

    class AdminCountedSession(Session):
        __slots__ = ()

        def send_packet(self, packet: OutgoingPacket, *, volatile: bool = False) -> bool:
            if send_packet(self, packet, volatile=volatile):
                counters.packets_out += 1
                counters.bytes_out += len(packet.data)
                return True
            return False

    return AdminCountedSession


# ---------------------------------------------------------------------- serialization


def _serialize_socket(socket: Any, nsp_name: str) -> dict[str, Any]:
    """A local ``Socket`` or a cluster ``RemoteSocket`` as the UI expects it."""
    data = socket.data
    admin = data.get("_admin") if isinstance(data, dict) else None
    client = getattr(socket, "client", None)
    if client is not None:
        session = client.session
        # The engine sid is a credential (it can post to the session): 12 characters only,
        # as the reference.
        client_id: Any = session.sid[:12]
        transport: Any = session.transport.name
    elif isinstance(admin, dict):
        client_id, transport = admin.get("clientId"), admin.get("transport")
    else:
        client_id = transport = None
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k != "_admin"}
    hs = socket.handshake
    headers = hs.headers or {}
    address = headers.get("cf-connecting-ip") or headers.get("x-forwarded-for") or hs.address
    return {
        "id": socket.id,
        "clientId": client_id,
        "transport": transport,
        "nsp": nsp_name,
        "data": _json_safe(data),
        "handshake": {
            "address": address,
            "headers": dict(headers),
            "query": dict(hs.query or {}),
            "issued": hs.issued,
            "secure": hs.secure,
            "time": hs.time,
            "url": hs.url,
            "xdomain": hs.xdomain,
        },
        "rooms": list(socket.rooms),
    }


# ---------------------------------------------------------------------- the UI's files


_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
}


def default_ui_dir() -> Path | None:
    """The UI's ``dist`` folder: packaged with this module, or ``./node_modules``."""
    for candidate in (_PACKAGED_UI_DIR, Path.cwd() / _NPM_UI_DIR):
        if (candidate / "index.html").is_file():
            return candidate
    return None


class _UiFiles:
    """Serves the UI's built files under ``prefix``; other paths go to ``fallback``."""

    def __init__(self, prefix: str, directory: Path | None, fallback: Handler | None) -> None:
        self.prefix = prefix
        self.bare_prefix = prefix.rstrip("/")
        self.directory = directory.resolve() if directory is not None else None
        self.fallback = fallback
        self._cache: dict[str, tuple[bytes, str]] = {}

    async def __call__(self, request: Request) -> HttpResponse:
        path = request.path
        if path == self.bare_prefix and path != self.prefix:
            # The page's assets are relative: the folder needs its trailing slash.
            return HttpResponse(301, [("Location", self.prefix), ("Content-Length", "0")])
        if not path.startswith(self.prefix):
            if self.fallback is not None:
                return await self.fallback(request)
            return HttpResponse(404, [("Content-Type", "text/plain")], b"Not Found")
        if request.method not in ("GET", "HEAD"):
            return HttpResponse(405, [("Allow", "GET, HEAD"), ("Content-Type", "text/plain")],
                                b"Method Not Allowed")
        if self.directory is None:
            return HttpResponse(
                503, [("Content-Type", "text/plain; charset=utf-8")],
                f"The Admin UI's files are not installed: npm install @socket.io/admin-ui@"
                f"{UI_VERSION} and pass instrument(..., ui_dir=<its ui/dist folder>)".encode())
        name = unquote(path[len(self.prefix):]) or "index.html"
        found = self._load(name)
        if found is None:
            return HttpResponse(404, [("Content-Type", "text/plain")], b"Not Found")
        body, content_type = found
        # Built files carry a content hash in their name; the page itself may change.
        cache = "no-cache" if name == "index.html" else "public, max-age=86400"
        headers = [("Content-Type", content_type), ("Cache-Control", cache),
                   ("X-Content-Type-Options", "nosniff")]
        return HttpResponse(200, headers, body)

    def _load(self, name: str) -> tuple[bytes, str] | None:
        assert self.directory is not None
        if "\x00" in name or "\\" in name:
            return None
        try:
            file = (self.directory / name).resolve()
            if not file.is_relative_to(self.directory) or not file.is_file():
                return None
            # Keyed by the file, not the name asked for: "./x", "a/../x"... are one entry.
            key = file.relative_to(self.directory).as_posix()
            cached = self._cache.get(key)
            if cached is not None:
                return cached
            body = file.read_bytes()
        except (OSError, ValueError):  # a name too long for the system, say
            return None
        content_type = _CONTENT_TYPES.get(file.suffix) or (
            mimetypes.guess_type(file.name)[0] or "application/octet-stream")
        self._cache[key] = (body, content_type)  # bounded by the folder's files
        return body, content_type


# ---------------------------------------------------------------------- instrumentation


class AdminInstrumentation:
    """What ``instrument()`` set up; ``close()`` stops it (stats, events, the UI's files)."""

    def __init__(
        self,
        io: Server,
        *,
        auth: Mapping[str, Any] | None,
        mode: str,
        read_only: bool,
        namespace_name: str,
        server_id: str | None,
        serve_ui_at: str | None,
        ui_dir: str | os.PathLike[str] | None,
        stats_interval: float,
    ) -> None:
        if mode not in ("development", "production"):
            raise ValueError('mode must be "development" or "production"')
        if stats_interval <= 0:
            raise ValueError("stats_interval must be positive")
        self.io = io
        self.mode = mode
        self.development = mode == "development"
        self.read_only = read_only
        self.stats_interval = stats_interval
        hostname = _socket_module.gethostname()
        # hostname#pid rather than the reference's bare hostname: several nodes of a fleet
        # often share a host, and the UI tells servers apart by this id.
        self.server_id = server_id or f"{hostname}#{os.getpid()}"
        self._base_stats = {"serverId": self.server_id, "hostname": hostname,
                            "pid": os.getpid()}
        self._started_at = time.monotonic()
        self._basic_auth = _BasicAuth(auth) if auth else None
        if self._basic_auth is None:
            logger.warning("Admin UI: authentication is disabled, anyone who can reach the "
                           "server may use it")
        self._sessions = _SessionStore()
        self._issued: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._counters = _Counters()
        self._events = _EventBuffer()
        self._session_class = _counting_session_class(self._counters)
        #: Sessions still on long-polling -> the (development mode) sockets they carry:
        #: pollingClientsCount, and socket_updated once they upgrade.
        self._polling: dict[Session, list[Socket]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self.closed = False

        features: list[str] = [] if read_only else [
            "EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT"]
        features.append("AGGREGATED_EVENTS")
        if self.development:
            features.append("ALL_EVENTS")
        self.supported_features = features

        self.admin_nsp = io.of(namespace_name)
        # First in line, before any middleware the application put on this namespace.
        self.admin_nsp._middlewares.insert(0, self._authenticate)
        self.admin_nsp.on("connection", self._on_admin_connection)
        # Whether an admin socket may exist elsewhere: with a cluster adapter, emits go
        # to Redis even when no admin is connected here.
        self._local_only = type(self.admin_nsp.adapter) is InMemoryAdapter

        engine = io.engine
        engine.on("connection", self._on_engine_connection)
        engine.on("close", self._on_engine_close)
        for session in list(engine.sessions.values()):
            self._count_session(session)

        if self.development:
            for nsp in list(io._nsps.values()):
                self._watch_namespace(nsp)
            io.on("new_namespace", self._watch_namespace)

        self._ui: _UiFiles | None = None
        if serve_ui_at is not None:
            self._serve_ui(serve_ui_at, ui_dir)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass  # started by the first connection
        else:
            self._emit_stats()

    # ------------------------------------------------------------------ authentication

    async def _authenticate(self, socket: Socket) -> None:
        if self._basic_auth is None or self.closed:
            return
        auth = socket.handshake.auth or {}
        if self._sessions.exists(auth.get("sessionId")):
            return
        if await self._basic_auth.check(auth.get("username"), auth.get("password")):
            self._issued[socket.id] = self._sessions.create()
            while len(self._issued) > MAX_SESSIONS:  # sockets refused by a later middleware
                self._issued.popitem(last=False)
            return
        raise ConnectRefused("invalid credentials")  # the UI matches on this text

    # ------------------------------------------------------------------ admin sockets

    def _on_admin_connection(self, socket: Socket) -> None:
        if self.closed:
            socket.disconnect()
            return
        if "JOIN" in self.supported_features:
            socket.on("emit", self._on_emit)
            socket.on("join", self._on_join)
            socket.on("leave", self._on_leave)
            socket.on("_disconnect", self._on_disconnect)
        session_id = self._issued.pop(socket.id, None)
        if session_id is not None:
            # The reference emits it from the middleware, before CONNECT; here it follows
            # CONNECT, which is when the UI listens for it.
            socket.emit("session", session_id)
        socket.emit("config", {"supportedFeatures": self.supported_features})
        if self.development:
            self.io.engine.spawn(self._send_all_sockets(socket))

    async def _send_all_sockets(self, socket: Socket) -> None:
        namespaces = list(self.io._nsps.values())
        results = await asyncio.gather(*(nsp.fetch_sockets() for nsp in namespaces),
                                       return_exceptions=True)
        serialized: list[dict[str, Any]] = []
        for nsp, found in zip(namespaces, results, strict=True):
            if isinstance(found, BaseException):
                logger.warning("Admin UI: fetch_sockets of %s failed: %r", nsp.name, found)
                continue
            serialized.extend(_serialize_socket(s, nsp.name) for s in found)
        socket.emit("all_sockets", serialized)

    def _target(self, nsp_name: Any, room_filter: Any) -> Any:
        if not isinstance(nsp_name, str) or not nsp_name:
            raise ValueError(f"bad namespace {nsp_name!r}")
        # An existing namespace only: of() would create one for any name the UI sends.
        nsp = next((n for n in self.io.namespaces if n.name == nsp_name), None)
        if nsp is None:
            raise ValueError(f"no namespace {nsp_name!r}")
        if room_filter is None or room_filter == "":
            return nsp
        if not isinstance(room_filter, str):
            raise ValueError(f"bad room filter {room_filter!r}")
        return nsp.in_(room_filter)

    def _on_emit(self, nsp_name: Any = None, room_filter: Any = None, event: Any = None,
                 *args: Any) -> None:
        logger.info("Admin UI: emit %r to %s %s", event, nsp_name, room_filter or "")
        self._target(nsp_name, room_filter).emit(event, *args)

    def _on_join(self, nsp_name: Any = None, room: Any = None, room_filter: Any = None) -> None:
        if not isinstance(room, str):
            raise ValueError(f"bad room {room!r}")
        logger.info("Admin UI: %s %s joins %r", nsp_name, room_filter or "(all)", room)
        self._target(nsp_name, room_filter).sockets_join(room)

    def _on_leave(self, nsp_name: Any = None, room: Any = None, room_filter: Any = None) -> None:
        if not isinstance(room, str):
            raise ValueError(f"bad room {room!r}")
        logger.info("Admin UI: %s %s leaves %r", nsp_name, room_filter or "(all)", room)
        self._target(nsp_name, room_filter).sockets_leave(room)

    def _on_disconnect(self, nsp_name: Any = None, close: Any = False,
                       room_filter: Any = None) -> None:
        logger.info("Admin UI: disconnect %s %s", nsp_name, room_filter or "(all)")
        self._target(nsp_name, room_filter).disconnect_sockets(bool(close))

    # ------------------------------------------------------------------ emitting

    def _audience(self) -> bool:
        """Whether an admin socket may hear an emit (here, or on another node)."""
        return not self.closed and (bool(self.admin_nsp.sockets) or not self._local_only)

    def _emit(self, event: str, *args: Any) -> None:
        try:
            self.admin_nsp.emit(event, *args)
        except Exception:
            logger.exception("Admin UI: could not emit %s", event)

    # ------------------------------------------------------------------ engine

    def _count_session(self, session: Session) -> None:
        if type(session) is Session:
            session.__class__ = self._session_class
        inner = session.on_message
        if inner is not None:
            counters = self._counters

            def counted(session: Session, data: str | bytes) -> None:
                counters.packets_in += 1
                counters.bytes_in += len(data)
                inner(session, data)

            session.on_message = counted
        if session.transport.name == "polling" and not session.upgraded:
            self._polling[session] = []

    def _on_engine_connection(self, session: Session) -> None:
        if self.closed:
            return
        self._events.push("rawConnection")
        self._count_session(session)
        if self._timer is None:
            self._emit_stats()

    def _on_engine_close(self, session: Session, reason: str) -> None:
        if self.closed:
            return
        self._events.push("rawDisconnection", reason)
        self._polling.pop(session, None)

    # ------------------------------------------------------------------ stats

    def _emit_stats(self) -> None:
        self._timer = None
        if self.closed:
            return
        engine = self.io.engine
        if engine._closing:
            return  # the server stopped; the next connection (after a restart) resumes
        self._check_upgrades()
        counters = self._counters
        events = self._events
        if counters.packets_in:
            events.push("packetsIn", None, counters.packets_in)
            events.push("bytesIn", None, counters.bytes_in)
        if counters.packets_out:
            events.push("packetsOut", None, counters.packets_out)
            events.push("bytesOut", None, counters.bytes_out)
        counters.packets_in = counters.bytes_in = counters.packets_out = counters.bytes_out = 0
        stats = {
            **self._base_stats,
            "uptime": time.monotonic() - self._started_at,
            "clientsCount": engine.clients_count,
            "pollingClientsCount": len(self._polling),
            "aggregatedEvents": events.values_and_clear(),
            "namespaces": [{"name": nsp.name, "socketsCount": len(nsp.sockets)}
                           for nsp in list(self.io._nsps.values())],
        }
        if self._audience():
            self._emit("server_stats", stats)
        self._timer = engine.loop.call_later(self.stats_interval, self._emit_stats)

    def _check_upgrades(self) -> None:
        """Sessions that left long-polling since the last stats: tell the UI (the engine
        has no upgrade event, and a hook on the upgrade would be a cost for everyone)."""
        done = [s for s in self._polling if s.upgraded or not s.is_open]
        for session in done:
            sockets = self._polling.pop(session)
            if not session.upgraded:
                continue
            transport = session.transport.name
            for socket in sockets:
                if not socket.connected:
                    continue
                data = socket.data
                if isinstance(data, dict) and isinstance(data.get("_admin"), dict):
                    data["_admin"]["transport"] = transport
                if self._audience():
                    self._emit("socket_updated",
                               {"id": socket.id, "nsp": socket.nsp.name, "transport": transport})

    # ------------------------------------------------------------------ development mode

    def _watch_namespace(self, nsp: Namespace) -> None:
        if self.closed:
            return
        handlers = nsp._handlers.setdefault("connection", [])
        # Children of a dynamic namespace share their parent's handler list: once is enough.
        # First in line, as the reference's prependListener: the UI hears of the socket
        # before the application's handlers act on it.
        if self._on_socket_connection not in handlers:
            handlers.insert(0, self._on_socket_connection)
        name = nsp.name
        loop_soon = self._call_soon
        nsp.adapter.on("join-room", lambda room, sid: self._on_room_joined(name, room, sid))
        # Deferred, as the reference's nextTick: a disconnecting socket leaves its rooms
        # before its disconnect event.
        nsp.adapter.on("leave-room",
                       lambda room, sid: loop_soon(self._on_room_left, name, room, sid))

    def _call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        self.io.engine.loop.call_soon(fn, *args)

    def _on_room_joined(self, nsp_name: str, room: str, sid: str) -> None:
        if self._audience():
            self._emit("room_joined", nsp_name, room, sid, _now_iso())

    def _on_room_left(self, nsp_name: str, room: str, sid: str) -> None:
        if self._audience():
            self._emit("room_left", nsp_name, room, sid, _now_iso())

    def _on_socket_connection(self, socket: Socket) -> None:
        if self.closed:
            return
        nsp = socket.nsp
        nsp_name = nsp.name
        session = socket.client.session
        if isinstance(socket.data, dict):
            # Travels with the socket's data to other nodes (fetch_sockets), so that they
            # can show which client and transport a remote socket has, as the reference.
            socket.data["_admin"] = {"clientId": session.sid[:12],
                                     "transport": session.transport.name}
        watched = self._polling.get(session)
        if watched is not None:
            # Not every socket a polling client ever connected: only the live ones.
            watched[:] = [s for s in watched if s.connected]
            watched.append(socket)
        if self._audience():
            self._emit("socket_connected", _serialize_socket(socket, nsp_name), _now_iso())
        sid = socket.id
        if nsp is not self.admin_nsp:
            def received(*args: Any) -> None:
                if self._audience():
                    self._emit("event_received", nsp_name, sid, list(args), _now_iso())

            def sent(*args: Any) -> None:
                if self._audience():
                    self._emit("event_sent", nsp_name, sid, list(args), _now_iso())

            socket.on_any(received)
            socket.on_any_outgoing(sent)

        def disconnected(reason: str) -> None:
            if self._audience():
                self._emit("socket_disconnected", nsp_name, sid, reason, _now_iso())

        socket.on("disconnect", disconnected)

    # ------------------------------------------------------------------ the UI's files

    def _serve_ui(self, serve_ui_at: str, ui_dir: str | os.PathLike[str] | None) -> None:
        prefix = serve_ui_at if serve_ui_at.endswith("/") else serve_ui_at + "/"
        if not prefix.startswith("/") or prefix == "/":
            raise ValueError('serve_ui_at must be a path such as "/admin/"')
        engine = self.io.engine
        if prefix.startswith(engine.path) or engine.path.startswith(prefix):
            raise ValueError(f"serve_ui_at {prefix!r} overlaps the engine path {engine.path!r}")
        directory = Path(ui_dir) if ui_dir is not None else default_ui_dir()
        if directory is not None and not (directory / "index.html").is_file():
            raise FileNotFoundError(f"{directory / 'index.html'} not found: ui_dir must be "
                                    "the ui/dist folder of @socket.io/admin-ui")
        if directory is None:
            logger.warning("Admin UI: its files were not found (npm install @socket.io/"
                           "admin-ui@%s, then pass ui_dir); %s answers 503", UI_VERSION, prefix)
        self._ui = _UiFiles(prefix, directory, engine.http_handler)
        engine.http_handler = self._ui

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Stop the stats and the event stream, stop serving the UI, refuse new admins.

        Hooks stay registered but do nothing (a socket's handlers cannot be found back
        cheaply); sessions count no more.
        """
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        engine = self.io.engine
        if self._ui is not None and engine.http_handler is self._ui:
            engine.http_handler = self._ui.fallback
        for session in list(engine.sessions.values()):
            if type(session) is self._session_class:
                session.__class__ = Session
        self._polling.clear()
        if getattr(self.io, "_admin_instrumentation", None) is self:
            self.io._admin_instrumentation = None


def instrument(
    io: Server,
    *,
    auth: Mapping[str, Any] | Literal[False] | None = None,
    mode: str = "development",
    read_only: bool = False,
    namespace_name: str = "/admin",
    server_id: str | None = None,
    serve_ui_at: str | None = None,
    ui_dir: str | os.PathLike[str] | None = None,
    stats_interval: float = STATS_INTERVAL,
) -> AdminInstrumentation:
    """Make ``io`` visible to the Socket.IO Admin UI (``@socket.io/admin-ui`` 0.5.1).

    ``auth``: None (anyone may connect: development only) or ``{"type": "basic",
    "username": ..., "password": ...}`` where the password is a bcrypt hash (needs the
    ``bcrypt`` package, extra ``[admin]``) or the plain text. ``mode="production"`` sends
    only the stats (no socket list, no per-event stream). ``read_only`` refuses the UI's
    actions. ``server_id`` names this node in the UI (default ``hostname#pid``).
    ``serve_ui_at="/admin/"`` serves the UI's built files (``ui_dir``: the package's
    ``ui/dist``; default: a copy packaged with this module, or
    ``./node_modules/@socket.io/admin-ui/ui/dist``) through the engine's ``http_handler``,
    passing other paths to the handler set before (set yours first; raw server only, not
    under ASGI).
    """
    if getattr(io, "_admin_instrumentation", None) is not None:
        raise RuntimeError("this server is already instrumented")
    if auth is False:  # the reference's spelling of "no authentication"
        auth = None
    instrumentation = AdminInstrumentation(
        io, auth=auth, mode=mode, read_only=read_only, namespace_name=namespace_name,
        server_id=server_id, serve_ui_at=serve_ui_at, ui_dir=ui_dir,
        stats_interval=stats_interval)
    # A marker on the server, deliberately not declared in its API.
    io._admin_instrumentation = instrumentation  # type: ignore[attr-defined]
    return instrumentation


def _main(argv: list[str] | None = None) -> int:
    """``python -m socketio_core.admin hash``: a bcrypt hash of a password read from the
    terminal (or stdin), for ``auth={"password": ...}`` or the gateway's
    ADMIN_UI_PASSWORD_HASH: the password itself never goes into the environment."""
    import argparse
    import getpass
    import sys

    parser = argparse.ArgumentParser(prog="python -m socketio_core.admin")
    parser.add_argument("command", choices=["hash"], help="hash: print a bcrypt hash")
    parser.parse_args(argv)
    try:
        import bcrypt
    except ImportError:
        print("needs the bcrypt package: pip install 'realtime-socketio[admin]'",
              file=sys.stderr)
        return 2
    if sys.stdin.isatty():
        password = getpass.getpass("Admin UI password: ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    if not password:
        print("empty password", file=sys.stderr)
        return 2
    print(bcrypt.hashpw(password.encode(), bcrypt.gensalt(12)).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
