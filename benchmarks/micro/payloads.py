"""Shared inputs of the micro-benchmarks: the same values for our code and python-socketio's."""

from __future__ import annotations

#: A ~100-byte chat-like object, the shape the load scenarios send.
PAYLOAD = {
    "t": 1732584000123,
    "user": "alice",
    "room": "lobby",
    "text": "hello world, this message is about one hundred bytes",
}

#: The Socket.IO text of ``emit("msg", PAYLOAD)`` in the main namespace.
EVENT_TEXT = (
    '2["msg",{"t":1732584000123,"user":"alice","room":"lobby",'
    '"text":"hello world, this message is about one hundred bytes"}]'
)
#: The same event asking for ack 12 (the echo scenario's shape).
EVENT_WITH_ACK_TEXT = "212" + EVENT_TEXT[1:]

#: An event with two binary attachments (1 KiB and 16 bytes).
BLOB = bytes(range(256)) * 4
SMALL_BLOB = b"0123456789abcdef"
BINARY_ARGS = ["upload", {"name": "photo.png", "data": BLOB}, SMALL_BLOB]
BINARY_TEXT = (
    '52-["upload",{"name":"photo.png","data":{"_placeholder":true,"num":0}},'
    '{"_placeholder":true,"num":1}]'
)

#: Engine.IO message text (the Socket.IO event inside an Engine.IO MESSAGE).
EIO_TEXT = "4" + EVENT_TEXT

#: A long-polling body of 8 packets (messages and a binary one, base64).
POLLING_PACKETS = 8

ROOM_SIZE = 1000
