"""``realtime-app`` / ``python -m realtime_app``: run the gateway."""

from __future__ import annotations

import json
import logging
import sys

from engineio_core import run, wait_for_shutdown_signal

from .app import GatewayApp
from .config import Config, ConfigError, load_config


class NodeFilter(logging.Filter):
    """Adds ``record.node`` (NODE_ID) to every record: which node of a fleet said it."""

    def __init__(self, node: str = "") -> None:
        super().__init__()
        self.node = node

    def filter(self, record: logging.LogRecord) -> bool:
        record.node = self.node or "-"
        return True


NODE = NodeFilter()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "node": getattr(record, "node", "-"),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(config: Config) -> None:
    handler = logging.StreamHandler(sys.stderr)
    NODE.node = config.node_id
    handler.addFilter(NODE)
    if config.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s [%(node)s] %(name)s: %(message)s"))
    logging.basicConfig(level=config.log_level, handlers=[handler], force=True)


async def serve(config: Config) -> None:
    app = GatewayApp(config)
    await app.start()
    NODE.node = app.gateway.node_id  # host:port is known now
    # One machine-readable line, for scripts and tests that start the gateway on port 0.
    print(f"LISTENING {app.port}", flush=True)
    await wait_for_shutdown_signal()
    await app.shutdown()


def main(argv: list[str] | None = None) -> None:
    try:
        config = load_config(argv)
    except ConfigError as exc:
        print(f"realtime-app: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    setup_logging(config)
    run(serve(config))


if __name__ == "__main__":
    main()
