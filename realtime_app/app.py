"""Assembles the gateway: store, auth, Socket.IO server, HTTP API; starts and stops it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket as socket_module
from pathlib import Path
from typing import Any

from engineio_core import CorsOptions
from socketio_core import InMemoryAdapter, RecoveryOptions, Server

from .auth import Authenticator
from .config import Config
from .gateway import Gateway
from .http_api import HttpApi
from .metrics import Metrics
from .store import MemoryStore, RedisStore, Store

logger = logging.getLogger(__name__)

__all__ = ["Gateway", "GatewayApp"]

#: Adapters that carry connection state recovery from one node to another.
RECOVERS_ACROSS_NODES = ("memory", "redis-streams")


def make_adapter(config: Config) -> tuple[Any, Any]:
    """(adapter factory for the Socket.IO server, its Redis client or None).

    Every Redis name the adapter uses starts with REDIS_PREFIX, so that several fleets
    (or test runs) can share one Redis.
    """
    if config.socket_adapter == "memory":
        return InMemoryAdapter, None
    import redis.asyncio as aioredis

    assert config.redis_url is not None  # load_config refuses a Redis adapter without it
    client = aioredis.Redis.from_url(config.redis_url, socket_connect_timeout=2.0,
                                     socket_keepalive=True, health_check_interval=10)
    key = f"{config.redis_prefix}socket.io"
    if config.socket_adapter == "redis-streams":
        from socketio_core.redis_streams_adapter import create_adapter as create_streams

        return create_streams(client, stream_name=key, channel_prefix=key,
                              session_key_prefix=f"{config.redis_prefix}sio:session:"), client
    from socketio_core.redis_adapter import create_adapter, create_sharded_adapter

    if config.socket_adapter == "redis-sharded":
        # "static": one channel per namespace, read by every node. In the dynamic modes a
        # node subscribes to a room's channel when the room gets its first local member,
        # asynchronously: a notification sent right after a user connected was lost.
        return create_sharded_adapter(client, channel_prefix=key,
                                      subscription_mode="static"), client
    return create_adapter(client, key=key), client


class GatewayApp:
    """The whole gateway in one object: ``await app.start()`` ... ``await app.stop()``."""

    def __init__(self, config: Config, store: Store | None = None) -> None:
        self.config = config
        if store is None:
            store = RedisStore(config.redis_url, config.redis_prefix,
                               pool_size=config.redis_pool_size) if config.redis_url \
                else MemoryStore()
        self.store = store
        self.auth = Authenticator(config)
        self.metrics = Metrics()
        self.adapter, self._adapter_redis = make_adapter(config)
        recovery = (RecoveryOptions(max_disconnection_duration=config.connection_recovery)
                    if config.connection_recovery > 0 else None)
        self.io = Server(
            cors=CorsOptions(origin=list(config.frontend_urls), credentials=True,
                             methods=("GET", "POST")),
            ping_interval=config.ping_interval,
            ping_timeout=config.ping_timeout,
            upgrade_timeout=config.upgrade_timeout,
            max_http_buffer_size=config.max_http_buffer_size,
            adapter=self.adapter,
            connection_state_recovery=recovery,
        )
        self.gateway = Gateway(config, self.io, store, self.auth, self.metrics)
        if self._adapter_redis is not None:
            self.gateway.cluster = self.adapter
        self.api = HttpApi(config, self.gateway, self.auth)
        self.api.not_ready = self._not_ready
        self.io.engine.http_handler = self.api.handle
        self.admin_ui = self._instrument_admin_ui() if config.admin_ui_enabled else None
        #: Set when a graceful stop began: /readyz fails, so a balancer sends no one here.
        self.stopping = False

    def _instrument_admin_ui(self) -> Any:
        """The Socket.IO Admin UI on namespace /admin, its page at ADMIN_UI_PATH."""
        from socketio_core.admin import instrument

        config = self.config
        auth = None  # ADMIN_UI=1: DEV_MODE only (load_config checks)
        if config.admin_ui_username is not None:
            auth = {"type": "basic", "username": config.admin_ui_username,
                    "password": config.admin_ui_password_hash}
        web_dir = Path(config.web_dir) if config.web_dir else Path.cwd() / "web"
        npm_ui = web_dir / "node_modules/@socket.io/admin-ui/ui/dist"
        return instrument(
            self.io, auth=auth,
            # Production mode sends stats only: no per-event stream of users' messages.
            mode="development" if config.dev_mode else "production",
            read_only=config.admin_ui_read_only, server_id=config.node_id or None,
            serve_ui_at=config.admin_ui_path,
            ui_dir=npm_ui if (npm_ui / "index.html").is_file() else None)

    def _not_ready(self) -> str | None:
        if self.stopping:
            return "shutting down"
        healthy = getattr(self.adapter, "healthy", None)
        if healthy is not None and not healthy:
            return "adapter not subscribed to Redis"
        return None

    async def start(self) -> None:
        if self.config.redis_url and not await self.store.ping():
            logger.warning("Redis at %s is not reachable yet; handlers will report errors "
                           "until it is", _redacted(self.config.redis_url))
        await self.io.start(self.config.host, self.config.port)
        if not self.gateway.node_id:
            self.gateway.node_id = f"{socket_module.gethostname()}:{self.port}"
        self.metrics.node = self.gateway.node_id
        if self._adapter_redis is not None:
            try:
                await self.adapter.ready()
            except ConnectionError as exc:
                # It keeps retrying with backoff; /readyz says 503 until it is subscribed.
                logger.warning("Socket.IO adapter not connected to Redis yet (%s): broadcasts "
                               "stay on this node until it is", exc)
        self.gateway.start()
        self._log_started()

    def _log_started(self) -> None:
        config = self.config
        recovery = (f"recovery {config.connection_recovery:g} s"
                    if config.connection_recovery > 0 else "recovery off")
        logger.info("gateway %s listening on http://%s:%d (%s store, %s adapter, %s%s)",
                    self.gateway.node_id, config.host, self.port,
                    "redis" if config.redis_url else "memory", config.socket_adapter, recovery,
                    ", development mode" if config.dev_mode else "")
        if config.connection_recovery > 0 and config.socket_adapter not in RECOVERS_ACROSS_NODES:
            logger.warning(
                "SOCKET_ADAPTER=%s cannot recover a session on another node: a client recovers "
                "only if it comes back to this one. Use redis-streams for recovery across "
                "nodes", config.socket_adapter)
        if config.dev_mode:
            # How to get a token, not the generated secret: the logs may be read by others.
            host = config.host if ":" not in config.host else f"[{config.host}]"
            logger.warning(
                "development mode (DEV_MODE=1): tokens are signed with JWT_SECRET or a secret "
                "generated for this process, and any local client can get one for any user: "
                "curl -s -X POST "
                "http://%s:%d/api/dev/token -H 'Content-Type: application/json' "
                "-d '{\"userId\": \"alice\"}'. Do not use this in production.",
                host, self.port)

    @property
    def port(self) -> int:
        return self.io.port

    async def shutdown(self) -> None:
        """Graceful stop (SIGTERM): see docs/howto/gateway-fleet.md, "Stopping a node".

        /readyz fails at once and new sessions are refused (503); stored messages are no
        longer sent from here and the acks of those sent come in; then the node stops
        reading, lets the handlers in flight finish and answer, and closes every
        connection as a transport close: clients reconnect by themselves (to another node)
        and recover their session. Stored messages are in the store; nothing is dropped.
        Bounded by SHUTDOWN_TIMEOUT_MS.
        """
        self.stopping = True
        timeout = self.config.shutdown_timeout
        loop = asyncio.get_running_loop()
        started = loop.time()
        logger.info("stopping: %d sockets, waiting up to %g s for handlers in flight",
                    len(self.io.sockets.sockets), timeout)
        self.io.engine.refuse_new_sessions()
        # First, while still reading: stored messages are sent no more (they wait in the
        # inbox for the node the client moves to) and the acks of those already sent come
        # back, so that none is sent again from the inbox after the move.
        await self.gateway.stop_sending_stored(timeout * 0.2)
        # Most of the rest for handlers; the remainder for closing and the last writes.
        finished = await self.io.engine.drain(timeout * 0.6)
        if not finished:
            logger.warning("stopping: handlers still running after %g s are cancelled",
                           timeout * 0.6)
        remaining = max(0.5, timeout - (loop.time() - started))
        try:
            await asyncio.wait_for(self.stop(remaining=remaining / 2), remaining)
        except TimeoutError:
            logger.warning("stopping: not closed cleanly within SHUTDOWN_TIMEOUT_MS, exiting")

    async def stop(self, remaining: float = 5.0) -> None:
        self.stopping = True
        self.metrics.refusals.flush()  # the last interval's refusals are not lost
        await self.gateway.stop()
        await self.io.stop()  # waits (bounded) for the disconnect tasks
        if self._adapter_redis is not None:
            # Its last writes (the sessions kept for recovery) get what is left of the time.
            await self.adapter.aclose(flush_timeout=remaining)
            with contextlib.suppress(Exception):
                await self._adapter_redis.aclose()
        await self.store.close()


def _redacted(url: str) -> str:
    """The URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user = credentials.partition(":")[0]
    return f"{scheme}{sep}{user}:***@{host}" if ":" in credentials else url
