"""Exceptions of the Socket.IO layer."""

from __future__ import annotations

from typing import Any

__all__ = ["AckTimeoutError", "ConnectRefused", "DisconnectedError"]


class ConnectRefused(Exception):
    """Raise from a connection middleware to refuse a client.

    The client's ``connect_error`` handler receives ``err.message == message`` and
    ``err.data == data``.
    """

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class AckTimeoutError(TimeoutError):
    """No acknowledgement in time. ``responses`` holds those that did arrive (broadcasts)."""

    def __init__(self, message: str = "operation has timed out", responses: Any = None) -> None:
        super().__init__(message)
        self.responses = responses if responses is not None else []


class DisconnectedError(ConnectionError):
    """The socket disconnected while waiting for an acknowledgement."""
