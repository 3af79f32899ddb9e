"""Gateway configuration: environment variables with matching command-line flags, validated."""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlparse

__all__ = ["Config", "ConfigError", "load_config"]

DEFAULT_RATE_LIMITS = {"private-message": 30, "music-sync": 60, "join-room": 10, "default": 100}
#: SOCKET_ADAPTER values: how the nodes of a fleet share broadcasts
#: (see docs/howto/gateway-fleet.md).
SOCKET_ADAPTERS = ("memory", "redis", "redis-sharded", "redis-streams")
JWT_ALGORITHMS = ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384",
                  "ES512", "PS256", "PS384", "PS512", "EdDSA")


class ConfigError(ValueError):
    """A configuration value is missing or wrong; the message names the variable."""


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 3000
    frontend_urls: tuple[str, ...] = ("http://localhost:5188",)
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    jwt_algorithms: tuple[str, ...] = ("HS256",)
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_leeway: float = 30.0
    api_key: str | None = None
    redis_url: str | None = None
    redis_prefix: str = "rt:"
    #: Seconds (the environment and flags take milliseconds, like Node's options). The
    #: seed's values: a client is declared gone after 85 s of silence.
    ping_interval: float = 25.0
    ping_timeout: float = 60.0
    upgrade_timeout: float = 10.0
    max_http_buffer_size: int = 1_000_000
    log_level: str = "INFO"
    log_format: str = "text"
    debug_events: bool = False
    rate_limits: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_RATE_LIMITS))
    rate_window: float = 60.0
    max_rooms_per_socket: int = 50
    banned_words: tuple[str, ...] = ("spam", "abuse")
    max_stored_messages: int = 1000
    presence_ttl: float = 60.0
    anomaly_connections_per_minute: int = 1000
    anomaly_messages_per_minute: int = 10000
    web_dir: str | None = None
    #: Asked for explicitly (DEV_MODE=1): a generated secret and the dev token endpoint.
    dev_mode: bool = False
    #: Sockets one user may have open on this process; 0 means no limit.
    max_sockets_per_user: int = 10
    #: When set, GET /metrics needs ``Authorization: Bearer <metrics_token>``.
    metrics_token: str | None = None
    # --- stored messages, Redis pool (issue 8)
    #: One sender's share of a target's inbox; None: a tenth of max_stored_messages.
    max_stored_messages_per_sender: int | None = None
    #: Seconds a stored message is kept (the environment takes seconds too).
    stored_message_ttl: float = 7 * 24 * 3600.0
    #: Stored messages replayed to a new connection per page; the next page follows the
    #: client's ack of the last one.
    inbox_page_size: int = 50
    redis_pool_size: int = 50
    # --- fleet (issue 10)
    #: memory, redis, redis-sharded or redis-streams (see SOCKET_ADAPTERS).
    socket_adapter: str = "memory"
    #: Seconds a disconnected client's session is kept for connection state recovery
    #: (0: recovery off).
    connection_recovery: float = 120.0
    #: Seconds SIGTERM waits for in-flight work before exiting.
    shutdown_timeout: float = 10.0
    #: This process's name in logs, metrics and /healthz ("" until the port is known:
    #: then hostname:port).
    node_id: str = ""
    # --- Socket.IO Admin UI (issue 12)
    admin_ui_username: str | None = None
    #: bcrypt hash of the Admin UI password (never the password itself).
    admin_ui_password_hash: str | None = None
    #: ADMIN_UI=1 without a username: no login, development mode only.
    admin_ui_open: bool = False
    admin_ui_read_only: bool = False
    admin_ui_path: str = "/admin/"

    @property
    def admin_ui_enabled(self) -> bool:
        return self.admin_ui_username is not None or self.admin_ui_open

    def rate_limit(self, event: str) -> int:
        return self.rate_limits.get(event, self.rate_limits["default"])

    @property
    def stored_messages_per_sender(self) -> int:
        if self.max_stored_messages_per_sender is not None:
            return min(self.max_stored_messages_per_sender, self.max_stored_messages)
        return max(1, self.max_stored_messages // 10)


# (flag, env var, help) — every setting can come from either; flags win.
_SETTINGS: list[tuple[str, str, str]] = [
    ("--host", "HOST", "interface to listen on (default 127.0.0.1)"),
    ("--port", "PORT", "port (default 3000)"),
    ("--frontend-url", "FRONTEND_URL", "allowed CORS origins, comma separated"),
    ("--jwt-secret", "JWT_SECRET", "HMAC secret for JWTs (HS256...)"),
    ("--jwt-public-key-file", "JWT_PUBLIC_KEY_FILE", "PEM public key for RS256/ES256 JWTs"),
    ("--jwt-algorithms", "JWT_ALGORITHMS", "accepted JWT algorithms, comma separated"),
    ("--jwt-audience", "JWT_AUDIENCE", "required aud claim"),
    ("--jwt-issuer", "JWT_ISSUER", "required iss claim"),
    ("--api-key", "API_KEY", "bearer key of the service HTTP API"),
    ("--redis-url", "REDIS_URL", "redis://... to share state between gateway processes"),
    ("--redis-host", "REDIS_HOST", "Redis host, used when REDIS_URL is unset"),
    ("--redis-port", "REDIS_PORT", "Redis port with REDIS_HOST (default 6379)"),
    ("--redis-password", "REDIS_PASSWORD", "Redis password with REDIS_HOST"),
    ("--redis-prefix", "REDIS_PREFIX", "prefix of every Redis key (default rt:)"),
    ("--ping-interval", "PING_INTERVAL", "ms (default 25000)"),
    ("--ping-timeout", "PING_TIMEOUT", "ms (default 60000)"),
    ("--upgrade-timeout", "UPGRADE_TIMEOUT", "ms (default 10000)"),
    ("--max-http-buffer-size", "MAX_HTTP_BUFFER_SIZE", "bytes (default 1000000)"),
    ("--log-level", "LOG_LEVEL", "DEBUG, INFO, WARNING, ERROR"),
    ("--log-format", "LOG_FORMAT", "text or json"),
    ("--debug-events", "DEBUG_EVENTS", "log every event in and out (true/false)"),
    ("--rate-limit-private-message", "RATE_LIMIT_PRIVATE_MESSAGE", "per user per 60 s (30)"),
    ("--rate-limit-music-sync", "RATE_LIMIT_MUSIC_SYNC", "per user per 60 s (60)"),
    ("--rate-limit-join-room", "RATE_LIMIT_JOIN_ROOM", "per user per 60 s (10)"),
    ("--rate-limit-default", "RATE_LIMIT_DEFAULT", "other events, per user per 60 s (100)"),
    ("--max-rooms-per-socket", "MAX_ROOMS_PER_SOCKET", "rooms a socket may join (50)"),
    ("--banned-words", "BANNED_WORDS", "comma separated, case-insensitive"),
    ("--max-stored-messages", "MAX_STORED_MESSAGES", "undelivered messages kept per user"),
    ("--anomaly-connections", "ANOMALY_CONNECTIONS_PER_MINUTE", "warn above (1000)"),
    ("--anomaly-messages", "ANOMALY_MESSAGES_PER_MINUTE", "warn above (10000)"),
    ("--web-dir", "WEB_DIR", "folder with node_modules for the page (default ./web)"),
    ("--dev-mode", "DEV_MODE", "development mode: generated secret, POST /api/dev/token "
     "(loopback HOST only)"),
    ("--jwt-leeway", "JWT_LEEWAY", "seconds of clock skew allowed on exp/nbf (30)"),
    ("--max-sockets-per-user", "MAX_SOCKETS_PER_USER", "per user and process, 0 = no limit (10)"),
    ("--metrics-token", "METRICS_TOKEN", "bearer token required by GET /metrics"),
    # --- stored messages, Redis pool (issue 8)
    ("--max-stored-messages-per-sender", "MAX_STORED_MESSAGES_PER_SENDER",
     "of one target's stored messages, how many one sender may hold (10%% of the max)"),
    ("--stored-message-ttl", "STORED_MESSAGE_TTL",
     "seconds an undelivered message is kept (default 604800, 7 days)"),
    ("--inbox-page-size", "INBOX_PAGE_SIZE", "stored messages replayed per ack (default 50)"),
    ("--redis-pool-size", "REDIS_POOL_SIZE", "Redis connections per process (default 50)"),
    # --- fleet (issue 10)
    ("--socket-adapter", "SOCKET_ADAPTER",
     "how nodes share broadcasts: memory, redis, redis-sharded, redis-streams (default "
     "redis-streams with Redis, memory without)"),
    ("--connection-recovery-ms", "CONNECTION_RECOVERY_MS",
     "how long a dropped client can come back with its session, 0 = off (default 120000)"),
    ("--shutdown-timeout-ms", "SHUTDOWN_TIMEOUT_MS",
     "SIGTERM: time to finish in-flight work before exiting (default 10000)"),
    ("--node-id", "NODE_ID", "this node's name in logs, metrics, /healthz (default host:port)"),
    # --- Socket.IO Admin UI (issue 12)
    ("--admin-ui-username", "ADMIN_UI_USERNAME",
     "turns the Socket.IO Admin UI on (namespace /admin, page at ADMIN_UI_PATH)"),
    ("--admin-ui-password-hash", "ADMIN_UI_PASSWORD_HASH",
     "bcrypt hash of the Admin UI password (python -m socketio_core.admin hash)"),
    ("--admin-ui-read-only", "ADMIN_UI_READ_ONLY", "the Admin UI may look, not act (false)"),
    ("--admin-ui-path", "ADMIN_UI_PATH", "where the Admin UI page is served (/admin/)"),
    ("--admin-ui", "ADMIN_UI", "Admin UI without a login: DEV_MODE only"),
]

#: Flags that take no value: given means "1".
_SWITCHES = frozenset({"--dev-mode", "--admin-ui"})


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="realtime-app",
        description="Realtime gateway: Socket.IO with JWT auth, presence, private messages, "
        "notifications and music sync. Every flag has an environment variable.",
    )
    for flag, env, help_text in _SETTINGS:
        if flag in _SWITCHES:
            parser.add_argument(flag, dest=env, action="store_const", const="1",
                                help=f"{help_text} [env {env}=1]")
        else:
            parser.add_argument(flag, dest=env, help=f"{help_text} [env {env}]")
    return parser


def _int(name: str, value: str, minimum: int = 0, maximum: int | None = None) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None
    if number < minimum or (maximum is not None and number > maximum):
        bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ConfigError(f"{name} must be {bounds}, got {number}")
    return number


def _bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def _list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _redis_url_from_parts(host: str, port: str | None, password: str | None) -> str:
    """The seed's REDIS_HOST / REDIS_PORT / REDIS_PASSWORD as one URL."""
    number = _int("REDIS_PORT", port, 1, 65535) if port is not None else 6379
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}{host}:{number}"


_BCRYPT_HASH = re.compile(r"^\$2[abxy]\$\d\d\$[./A-Za-z0-9]{53}$")


def _admin_ui(given: Callable[[str], str | None], values: dict[str, object]) -> None:
    """The Admin UI: off by default, never without a login outside development mode."""
    user, password_hash = given("ADMIN_UI_USERNAME"), given("ADMIN_UI_PASSWORD_HASH")
    if (user is None) != (password_hash is None):
        raise ConfigError("set both ADMIN_UI_USERNAME and ADMIN_UI_PASSWORD_HASH (or neither)")
    if password_hash is not None:
        if not _BCRYPT_HASH.match(password_hash):
            raise ConfigError("ADMIN_UI_PASSWORD_HASH must be a bcrypt hash ($2b$12$...), not a "
                              "password: python -m socketio_core.admin hash")
        try:
            import bcrypt  # noqa: F401
        except ImportError:
            raise ConfigError("ADMIN_UI_PASSWORD_HASH needs the bcrypt package: "
                              "pip install 'realtime-socketio[admin]'") from None
        values["admin_ui_username"] = user
        values["admin_ui_password_hash"] = password_hash
    if (v := given("ADMIN_UI")) is not None and _bool("ADMIN_UI", v) and user is None:
        if not values.get("dev_mode"):
            raise ConfigError("ADMIN_UI=1 without a login needs DEV_MODE=1; set "
                              "ADMIN_UI_USERNAME and ADMIN_UI_PASSWORD_HASH instead")
        values["admin_ui_open"] = True
    if (v := given("ADMIN_UI_READ_ONLY")) is not None:
        values["admin_ui_read_only"] = _bool("ADMIN_UI_READ_ONLY", v)
    if (v := given("ADMIN_UI_PATH")) is not None:
        if not re.match(r"^/[A-Za-z0-9_\-/]*/$", v) or v.startswith("/socket.io/"):
            raise ConfigError(f"ADMIN_UI_PATH must be a path like /admin/, got {v!r}")
        values["admin_ui_path"] = v


def _is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_auth_mode(values: dict[str, object]) -> None:
    """Development mode only when asked, and never reachable from another machine.

    It used to be the silent fallback without a key: behind a reverse proxy on the same
    machine every client looks like loopback and could mint a token for any user.
    """
    has_key = "jwt_secret" in values or "jwt_public_key" in values
    if values.get("dev_mode"):
        if "jwt_public_key" in values:
            raise ConfigError(
                "DEV_MODE=1 cannot be combined with JWT_PUBLIC_KEY_FILE: development mode "
                "signs tokens itself, with JWT_SECRET or a secret generated at start")
        host = str(values.get("host", Config.host))
        if not _is_loopback_host(host):
            raise ConfigError(
                f"DEV_MODE=1 needs a loopback HOST (127.0.0.1, ::1 or localhost), got "
                f"{host!r}: development mode lets any client mint a token for any user. "
                "Set JWT_SECRET or JWT_PUBLIC_KEY_FILE to listen on other interfaces")
    elif not has_key:
        raise ConfigError(
            "no JWT key: set JWT_SECRET (HS256...) or JWT_PUBLIC_KEY_FILE (RS256, ES256...); "
            "for local development only, set DEV_MODE=1 (--dev-mode; scripts/run does)")


def _check_public_key(pem: str, algorithms: tuple[str, ...]) -> None:
    """Refuse at start a key that could never verify a token of these algorithms."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem.encode())
    except (ValueError, TypeError):
        raise ConfigError("JWT_PUBLIC_KEY_FILE is not a PEM public key") from None
    for algorithm in algorithms:
        if algorithm[:2] in ("RS", "PS"):
            expected: tuple[type, ...] = (rsa.RSAPublicKey,)
        elif algorithm.startswith("ES"):
            expected = (ec.EllipticCurvePublicKey,)
        else:  # EdDSA
            expected = (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)
        if not isinstance(key, expected):
            raise ConfigError(
                f"JWT_PUBLIC_KEY_FILE holds a {type(key).__name__.lstrip('_')}, "
                f"which cannot verify {algorithm}"
            )


def load_config(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Build the configuration from ``environ`` (default os.environ) and ``argv``."""
    env = dict(os.environ if environ is None else environ)
    args = vars(_parser().parse_args(argv))
    raw = {key: (args[key] if args.get(key) is not None else env.get(key)) for key in args}
    values: dict[str, object] = {}

    def given(key: str) -> str | None:
        value = raw.get(key)
        return value if value not in (None, "") else None

    if (v := given("HOST")) is not None:
        values["host"] = v
    if (v := given("PORT")) is not None:
        values["port"] = _int("PORT", v, 0, 65535)
    if (v := given("FRONTEND_URL")) is not None:
        urls = _list(v)
        for url in urls:
            parsed = urlparse(url)
            if parsed.scheme not in ("http", "https") or not parsed.netloc or url == "*":
                raise ConfigError(f"FRONTEND_URL entries must be http(s) origins, got {url!r}")
        values["frontend_urls"] = tuple(u.rstrip("/") for u in urls)
    secret, key_file = given("JWT_SECRET"), given("JWT_PUBLIC_KEY_FILE")
    if secret is not None and key_file is not None:
        raise ConfigError("set JWT_SECRET or JWT_PUBLIC_KEY_FILE, not both")
    if secret is not None:
        if len(secret) < 32:
            raise ConfigError("JWT_SECRET must be at least 32 characters")
        values["jwt_secret"] = secret
    if key_file is not None:
        try:
            values["jwt_public_key"] = Path(key_file).read_text()
        except OSError as exc:
            raise ConfigError(f"JWT_PUBLIC_KEY_FILE cannot be read: {exc}") from None
    if (v := given("JWT_ALGORITHMS")) is not None:
        listed = _list(v)
        unknown = [a for a in listed if a not in JWT_ALGORITHMS]
        if not listed or unknown:
            raise ConfigError(f"JWT_ALGORITHMS has unknown algorithms {unknown or v!r}")
        values["jwt_algorithms"] = listed
    algorithms = values.get("jwt_algorithms", ("HS256",))
    assert isinstance(algorithms, tuple)
    if key_file is not None and any(a.startswith("HS") for a in algorithms):
        raise ConfigError("JWT_PUBLIC_KEY_FILE needs asymmetric JWT_ALGORITHMS (RS256, ES256...)")
    if key_file is not None:
        _check_public_key(str(values["jwt_public_key"]), algorithms)
    if secret is not None and not all(a.startswith("HS") for a in algorithms):
        raise ConfigError("JWT_SECRET works only with HS256/HS384/HS512 in JWT_ALGORITHMS")
    for key, name in (("JWT_AUDIENCE", "jwt_audience"), ("JWT_ISSUER", "jwt_issuer"),
                      ("API_KEY", "api_key"), ("WEB_DIR", "web_dir")):
        if (v := given(key)) is not None:
            values[name] = v
    if "api_key" in values and len(str(values["api_key"])) < 16:
        raise ConfigError("API_KEY must be at least 16 characters")
    if (v := given("REDIS_URL")) is not None:
        parsed = urlparse(v)
        if parsed.scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(
                f"REDIS_URL must start with redis://, rediss:// or unix://, got {v!r}"
            )
        try:
            parsed.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            raise ConfigError(f"REDIS_URL has an invalid port: {v!r}") from None
        values["redis_url"] = v
    elif (v := given("REDIS_HOST")) is not None:
        values["redis_url"] = _redis_url_from_parts(v, given("REDIS_PORT"), given("REDIS_PASSWORD"))
    if "redis_url" in values and importlib.util.find_spec("redis") is None:
        # redis is an extra: a package installed without it must say so, not crash later.
        raise ConfigError("Redis needs the redis package: pip install 'realtime-socketio[redis]'")
    if (v := given("REDIS_PREFIX")) is not None:
        values["redis_prefix"] = v
    for key, name in (("PING_INTERVAL", "ping_interval"), ("PING_TIMEOUT", "ping_timeout"),
                      ("UPGRADE_TIMEOUT", "upgrade_timeout")):
        if (v := given(key)) is not None:
            values[name] = _int(key, v, 1) / 1000
    if (v := given("MAX_HTTP_BUFFER_SIZE")) is not None:
        values["max_http_buffer_size"] = _int("MAX_HTTP_BUFFER_SIZE", v, 1024)
    if (v := given("LOG_LEVEL")) is not None:
        if v.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {v!r}")
        values["log_level"] = v.upper()
    if (v := given("LOG_FORMAT")) is not None:
        if v not in ("text", "json"):
            raise ConfigError(f"LOG_FORMAT must be text or json, got {v!r}")
        values["log_format"] = v
    if (v := given("DEBUG_EVENTS")) is not None:
        values["debug_events"] = _bool("DEBUG_EVENTS", v)
    limits = dict(DEFAULT_RATE_LIMITS)
    for key, event in (("RATE_LIMIT_PRIVATE_MESSAGE", "private-message"),
                       ("RATE_LIMIT_MUSIC_SYNC", "music-sync"),
                       ("RATE_LIMIT_JOIN_ROOM", "join-room"), ("RATE_LIMIT_DEFAULT", "default")):
        if (v := given(key)) is not None:
            limits[event] = _int(key, v, 1)
    values["rate_limits"] = limits
    if (v := given("MAX_ROOMS_PER_SOCKET")) is not None:
        values["max_rooms_per_socket"] = _int("MAX_ROOMS_PER_SOCKET", v, 1, 10_000)
    if (v := given("BANNED_WORDS")) is not None:
        values["banned_words"] = tuple(w.lower() for w in _list(v))
    if (v := given("MAX_STORED_MESSAGES")) is not None:
        values["max_stored_messages"] = _int("MAX_STORED_MESSAGES", v, 1, 1_000_000)
    if (v := given("ANOMALY_CONNECTIONS_PER_MINUTE")) is not None:
        values["anomaly_connections_per_minute"] = _int("ANOMALY_CONNECTIONS_PER_MINUTE", v, 1)
    if (v := given("ANOMALY_MESSAGES_PER_MINUTE")) is not None:
        values["anomaly_messages_per_minute"] = _int("ANOMALY_MESSAGES_PER_MINUTE", v, 1)
    if (v := given("DEV_MODE")) is not None:
        values["dev_mode"] = _bool("DEV_MODE", v)
    if (v := given("JWT_LEEWAY")) is not None:
        values["jwt_leeway"] = float(_int("JWT_LEEWAY", v, 0, 3600))
    if (v := given("MAX_SOCKETS_PER_USER")) is not None:
        values["max_sockets_per_user"] = _int("MAX_SOCKETS_PER_USER", v, 0, 100_000)
    if (v := given("METRICS_TOKEN")) is not None:
        if len(v) < 16:
            raise ConfigError("METRICS_TOKEN must be at least 16 characters")
        values["metrics_token"] = v
    # --- stored messages, Redis pool (issue 8)
    if (v := given("MAX_STORED_MESSAGES_PER_SENDER")) is not None:
        per_sender = _int("MAX_STORED_MESSAGES_PER_SENDER", v, 1, 1_000_000)
        maximum = values.get("max_stored_messages", Config.max_stored_messages)
        assert isinstance(maximum, int)
        if per_sender > maximum:
            raise ConfigError(f"MAX_STORED_MESSAGES_PER_SENDER must be <= MAX_STORED_MESSAGES "
                              f"({maximum}), got {per_sender}")
        values["max_stored_messages_per_sender"] = per_sender
    if (v := given("STORED_MESSAGE_TTL")) is not None:
        values["stored_message_ttl"] = float(_int("STORED_MESSAGE_TTL", v, 1, 366 * 24 * 3600))
    if (v := given("INBOX_PAGE_SIZE")) is not None:
        values["inbox_page_size"] = _int("INBOX_PAGE_SIZE", v, 1, 1000)
    if (v := given("REDIS_POOL_SIZE")) is not None:
        values["redis_pool_size"] = _int("REDIS_POOL_SIZE", v, 1, 10_000)
    # --- fleet (issue 10)
    if (v := given("SOCKET_ADAPTER")) is not None:
        if v not in SOCKET_ADAPTERS:
            raise ConfigError(f"SOCKET_ADAPTER must be one of {', '.join(SOCKET_ADAPTERS)}, "
                              f"got {v!r}")
        if v != "memory" and "redis_url" not in values:
            raise ConfigError(f"SOCKET_ADAPTER={v} needs Redis: set REDIS_URL (or REDIS_HOST)")
        values["socket_adapter"] = v
    elif "redis_url" in values:
        values["socket_adapter"] = "redis-streams"
    if (v := given("CONNECTION_RECOVERY_MS")) is not None:
        values["connection_recovery"] = _int("CONNECTION_RECOVERY_MS", v, 0, 86_400_000) / 1000
    if (v := given("SHUTDOWN_TIMEOUT_MS")) is not None:
        values["shutdown_timeout"] = _int("SHUTDOWN_TIMEOUT_MS", v, 0, 3_600_000) / 1000
    if (v := given("NODE_ID")) is not None:
        if len(v) > 128 or not v.isprintable():
            raise ConfigError("NODE_ID must be at most 128 printable characters")
        values["node_id"] = v
    _admin_ui(given, values)
    # Last, so that a wrong value of any other variable is reported by name first.
    _check_auth_mode(values)
    # Each value was checked above; a dict[str, object] cannot say which key has which type.
    return Config(**values)  # type: ignore[arg-type]
