"""Socket.IO beside a Starlette app, one ASGI application under one uvicorn:

    uvicorn --app-dir examples/asgi_starlette app:app --port 8000

``/socket.io/`` is the Socket.IO server (and, with ``serve_client``, the browser client at
``/socket.io/socket.io.js``); every other path goes to Starlette. Both run on uvicorn's
event loop, so a Starlette endpoint can emit to the Socket.IO clients directly.
"""
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from socketio_core import Server

io = Server(serve_client=True)


@io.on("connection")
def connected(socket):
    socket.join("news")

    @socket.on("hello")
    def hello(name):
        return f"hello {name}"  # the ack


async def health(request):
    return JSONResponse({"ok": True, "clients": io.engine.clients_count})


async def publish(request):  # an HTTP endpoint that talks to the Socket.IO clients
    io.to("news").emit("news", await request.json())
    return JSONResponse({"sent": True})


web = Starlette(routes=[Route("/health", health), Route("/publish", publish, methods=["POST"])])
app = io.asgi_app(web)  # Socket.IO's path first, Starlette for the rest (and the lifespan)
