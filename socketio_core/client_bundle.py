"""Node's ``serveClient``: the socket.io browser client, served under the engine path.

``Server(serve_client=True)`` answers ``/socket.io/socket.io.js`` (and ``.min.js``,
``.esm.min.js``, ``.msgpack.min.js``, each with its ``.map``) as Node's socket.io 4.8
does: ``ETag: "<version>"``, ``Cache-Control: public, max-age=0``, ``304`` when
``If-None-Match`` carries that ETag (weak or strong), the body compressed when the client
accepts it, any method, before the engine's origin guard (CORS headers still apply). Two
differences: no brotli (not in the standard library: a client that prefers ``br`` gets
gzip or deflate if it accepts them, else the plain file), and a ``Vary: Accept-Encoding`` so
that a cache does not hand a gzip body to a client that did not ask for one.

The files are the ``dist`` of the npm ``socket.io-client`` pinned by ``web/package-lock.json``:
inside the installed package (``socketio_core/client-dist/``, put there by the build, see
``setup.py``), or in a source checkout ``web/node_modules/socket.io-client/dist`` (or
``./node_modules/...``) after ``npm ci``.
"""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

from engineio_core.request import HttpResponse, Request

__all__ = ["CLIENT_FILES", "PACKAGED_DIR", "ClientBundle", "find_client_dist"]

#: The names Node serves (socket.io 4.8 ``CLIENT_FILES``).
CLIENT_FILES = frozenset({
    "socket.io.js", "socket.io.js.map",
    "socket.io.min.js", "socket.io.min.js.map",
    "socket.io.esm.min.js", "socket.io.esm.min.js.map",
    "socket.io.msgpack.min.js", "socket.io.msgpack.min.js.map",
})

#: Where the build puts the bundle inside the package (with ``BUNDLE.json``, ``LICENSE``).
PACKAGED_DIR = Path(__file__).parent / "client-dist"
_NPM_DIST = Path("node_modules") / "socket.io-client" / "dist"
_CHECKOUT_WEB = Path(__file__).resolve().parent.parent / "web"

#: Codings we can produce (no brotli in the standard library), in our order for ``*``.
_CODINGS = ("gzip", "deflate")


def find_client_dist() -> tuple[Path, str]:
    """(folder of the bundle files, the client's version): packaged, else a checkout's npm."""
    if (PACKAGED_DIR / "BUNDLE.json").is_file():
        return PACKAGED_DIR, json.loads((PACKAGED_DIR / "BUNDLE.json").read_text())["version"]
    for base in (_CHECKOUT_WEB, Path.cwd()):
        dist = base / _NPM_DIST
        if (dist / "socket.io.js").is_file():
            version = json.loads((dist.parent / "package.json").read_text())["version"]
            return dist, version
    raise FileNotFoundError(
        "serve_client: the socket.io client bundle is not installed (it ships in the "
        "package's wheel; in a source checkout run `npm ci` in web/)")


def _accepted_coding(header: str) -> str | None:
    """The coding to answer with, from ``Accept-Encoding``, or None (identity).

    As Node's ``accepts`` (negotiator): the highest q-value wins, a tie goes to the coding
    the client listed first, and ``*`` stands for the codings not listed, in our order.
    """
    weights: dict[str, tuple[float, int]] = {}
    for order, part in enumerate(header.split(",")):
        name, _, params = part.strip().partition(";")
        name = name.strip().lower()
        if not name or name in weights:
            continue
        weight = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights[name] = (weight, order)
    best: str | None = None
    best_rank = (0.0, 0)
    for server_order, coding in enumerate(_CODINGS):
        if coding in weights:
            weight, order = weights[coding]
        elif "*" in weights:
            weight, order = weights["*"][0], len(weights) + server_order
        else:
            continue
        rank = (weight, -order)
        if weight > 0 and rank > best_rank:
            best, best_rank = coding, rank
    return best


class ClientBundle:
    """``engine.path_file_handler``: the bundle's files under ``prefix`` (the engine path)."""

    def __init__(self, prefix: str, directory: Path | None = None,
                 version: str | None = None) -> None:
        if directory is None:
            directory, found_version = find_client_dist()
            version = version or found_version
        if version is None:
            raise ValueError("give the bundle's version with its directory")
        self.prefix = prefix
        self.directory = directory
        self.version = version
        # Per the standard ETags are quoted; Node accepts the weak form too.
        self.etag = f'"{version}"'
        self._weak_etag = f"W/{self.etag}"
        #: (name, coding or "") -> body; at most 8 files x 3 forms, all small.
        self._bodies: dict[tuple[str, str], bytes] = {}

    def __call__(self, request: Request) -> HttpResponse | None:
        path = request.path
        if not path.startswith(self.prefix):
            return None
        name = path[len(self.prefix):]
        if name not in CLIENT_FILES:
            return None
        headers = [("Cache-Control", "public, max-age=0"), ("ETag", self.etag),
                   ("Vary", "Accept-Encoding")]
        if request.headers.get("if-none-match") in (self.etag, self._weak_etag):
            return HttpResponse(304, headers, b"")
        kind = "json" if name.endswith(".map") else "javascript"
        headers.append(("Content-Type", f"application/{kind}; charset=utf-8"))
        coding = _accepted_coding(request.headers.get("accept-encoding", ""))
        if coding is not None:
            headers.append(("Content-Encoding", coding))
        return HttpResponse(200, headers, self._body(name, coding or ""))

    def _body(self, name: str, coding: str) -> bytes:
        body = self._bodies.get((name, coding))
        if body is None:
            if coding:
                plain = self._body(name, "")
                if coding == "gzip":
                    # mtime=0: the same bytes every time (caches, and the ETag's meaning).
                    body = gzip.compress(plain, compresslevel=9, mtime=0)
                else:
                    body = zlib.compress(plain, 9)
            else:
                body = (self.directory / name).read_bytes()
            self._bodies[(name, coding)] = body
        return body
