"""Assembles the gateway: store, auth, Socket.IO server, HTTP API; starts and stops it."""

from __future__ import annotations

import logging

from engineio_core import CorsOptions
from socketio_core import Server

from .auth import Authenticator
from .config import Config
from .gateway import Gateway
from .http_api import HttpApi
from .metrics import Metrics
from .store import MemoryStore, RedisStore, Store

logger = logging.getLogger(__name__)

__all__ = ["Gateway", "GatewayApp"]


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
        self.io = Server(
            cors=CorsOptions(origin=list(config.frontend_urls), credentials=True,
                             methods=("GET", "POST")),
            ping_interval=config.ping_interval,
            ping_timeout=config.ping_timeout,
            upgrade_timeout=config.upgrade_timeout,
            max_http_buffer_size=config.max_http_buffer_size,
        )
        self.gateway = Gateway(config, self.io, store, self.auth, self.metrics)
        self.api = HttpApi(config, self.gateway, self.auth)
        self.io.engine.http_handler = self.api.handle

    async def start(self) -> None:
        if self.config.redis_url and not await self.store.ping():
            logger.warning("Redis at %s is not reachable yet; handlers will report errors "
                           "until it is", self.config.redis_url)
        await self.io.start(self.config.host, self.config.port)
        self.gateway.start()
        logger.info("gateway listening on http://%s:%d (%s store%s)", self.config.host,
                    self.port, "redis" if self.config.redis_url else "memory",
                    ", development mode" if self.config.dev_mode else "")
        if self.config.dev_mode:
            # How to get a token, not the generated secret: the logs may be read by others.
            host = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
            logger.warning(
                "development mode (DEV_MODE=1): tokens are signed with a secret generated for "
                "this process and any local client can get one for any user: curl -s -X POST "
                "http://%s:%d/api/dev/token -H 'Content-Type: application/json' "
                "-d '{\"userId\": \"alice\"}'. Do not use this in production.",
                host, self.port)

    @property
    def port(self) -> int:
        return self.io.port

    async def stop(self) -> None:
        self.metrics.refusals.flush()  # the last interval's refusals are not lost
        await self.gateway.stop()
        await self.io.stop()
        await self.store.close()
