"""The realtime gateway: JWT-authenticated Socket.IO with presence, private messages,
notifications, rooms and music sync, on socketio_core."""

from .app import GatewayApp
from .config import Config, ConfigError, load_config

__all__ = ["Config", "ConfigError", "GatewayApp", "load_config"]
