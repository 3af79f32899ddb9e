"""A chat: `python examples/chat/server.py [port]`, then open http://127.0.0.1:3000 twice."""
import sys
from pathlib import Path

from engineio_core import HttpResponse
from socketio_core import Server, run

PAGE = (Path(__file__).parent / "index.html").read_bytes()


async def page(request):  # every path but /socket.io/ gets the page
    return HttpResponse(200, [("Content-Type", "text/html; charset=utf-8")], PAGE)

io = Server(serve_client=True, http_handler=page)  # the page loads /socket.io/socket.io.js


@io.on("connection")
def connected(socket):
    @socket.on("chat")
    def chat(name, text):
        io.emit("chat", str(name)[:40], str(text)[:500])  # to everyone, the sender too

port = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
print(f"Chat on http://127.0.0.1:{port}", flush=True)
run(io.serve("127.0.0.1", port))
