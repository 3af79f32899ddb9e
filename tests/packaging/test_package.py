"""The package as a new user gets it: ``python -m build``, then the wheel in a fresh venv.

One build and one venv per run (module fixtures): the wheel is installed bare, then with
each extra in turn (``[uvloop]``, ``[redis]``, ``[msgpack]``, ``[admin]``); each step imports
the packages and starts the commands from the venv, outside the source tree (no
PYTHONPATH, an empty working folder). The installed ``realtime-app`` must serve a working
page: the vendored Vue and socket.io client, and Chromium signs in and connects
(``tests/interop/gateway_browser.mjs``). pip reaches PyPI (or its cache) for the
dependencies; every step has a time bound.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop_support import ServerHandle, start_process

pytestmark = [pytest.mark.packaging, pytest.mark.timeout(300)]

REPO_ROOT = Path(__file__).resolve().parents[2]
WEB_DIR = REPO_ROOT / "web"
INTEROP_DIR = REPO_ROOT / "tests" / "interop"
CHROMIUM = Path("/usr/bin/chromium")
API_KEY = "packaging-api-key-0123456789"
BUILD_TIMEOUT = 180
PIP_TIMEOUT = 180
COMMAND_TIMEOUT = 30

#: folder in the package -> (npm package, files the build must put there)
BUNDLES = {
    "realtime_app/static/vendor": ("vue", {"vue.esm-browser.prod.js", "LICENSE", "BUNDLE.json"}),
    "socketio_core/client-dist": ("socket.io-client", {
        "socket.io.js", "socket.io.js.map", "socket.io.min.js", "socket.io.min.js.map",
        "socket.io.esm.min.js", "socket.io.esm.min.js.map", "socket.io.msgpack.min.js",
        "socket.io.msgpack.min.js.map", "LICENSE", "BUNDLE.json"}),
    "socketio_core/admin_ui": ("@socket.io/admin-ui", {"index.html", "LICENSE", "BUNDLE.json"}),
}
LOCKS = {"vue": WEB_DIR, "socket.io-client": WEB_DIR, "@socket.io/admin-ui": INTEROP_DIR}
#: extra -> code that must work once it is installed
EXTRAS = {
    "uvloop": "import uvloop, engineio_core; engineio_core.run(uvloop.Loop.__name__ and "
              "__import__('asyncio').sleep(0))",
    # Before [msgpack]: [redis] alone must bring what the adapters and the emitter need.
    "redis": "import redis.asyncio, socketio_core.redis_streams_adapter; "
             "from socketio_core.redis_emitter import Emitter; "
             "from socketio_core.redis_adapter import create_adapter; "
             "client = redis.asyncio.Redis(); Emitter(client); "
             "from socketio_core import Server; Server(adapter=create_adapter(client))",
    "msgpack": "from socketio_core.msgpack_parser import MsgPackParser; "
               "from socketio_core import Server; Server(parser=MsgPackParser())",
    # The Admin UI's files ship in the package: serve_ui_at works from an empty folder.
    "admin": "import bcrypt; from socketio_core import Server; from socketio_core.admin "
             "import instrument, default_ui_dir, _PACKAGED_UI_DIR; "
             "instrument(Server(), auth={'type': 'basic', 'username': 'a', "
             "'password': bcrypt.hashpw(b'p', bcrypt.gensalt(4)).decode()}, "
             "mode='production', serve_ui_at='/admin/'); "
             "assert default_ui_dir() == _PACKAGED_UI_DIR, default_ui_dir()",
}


def locked_version(package: str) -> str:
    lock = json.loads((LOCKS[package] / "package-lock.json").read_text())
    return lock["packages"][f"node_modules/{package}"]["version"]


def run(argv: list[str], *, timeout: float = COMMAND_TIMEOUT, cwd: Path | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: nothing that points back at the source tree."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "JWT_", "API_KEY", "REDIS_", "DEV_MODE", "WEB_DIR",
            "SOCKET_ADAPTER", "FRONTEND_URL", "METRICS_TOKEN", "MAX_", "RATE_LIMIT_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="packaging-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def dists(workdir: Path) -> dict[str, Path]:
    try:
        import build  # noqa: F401
    except ImportError:
        pytest.skip("the build package is missing (it is in the dev extra)")
    for npm_dir in (WEB_DIR, INTEROP_DIR):
        if not (npm_dir / "node_modules").is_dir():
            pytest.skip(f"{npm_dir}/node_modules is missing (npm ci there): the bundles come "
                        "from it")
    out = workdir / "dist"
    proc = run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO_ROOT)],
               timeout=BUILD_TIMEOUT, env=clean_env())
    assert proc.returncode == 0, f"python -m build failed:\n{proc.stdout[-3000:]}\n" \
                                 f"{proc.stderr[-3000:]}"
    wheels, sdists = list(out.glob("*.whl")), list(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, list(out.iterdir())
    return {"wheel": wheels[0], "sdist": sdists[0]}


@pytest.fixture(scope="module")
def venv(workdir: Path, dists: dict[str, Path]) -> Path:
    """A fresh venv (no system packages) with the bare wheel installed."""
    path = workdir / "venv"
    proc = run([sys.executable, "-m", "venv", str(path)], timeout=60)
    assert proc.returncode == 0, proc.stderr
    pip_install(path, str(dists["wheel"]))
    return path


def pip_install(venv: Path, requirement: str) -> None:
    proc = run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                "--disable-pip-version-check", "--no-input", requirement],
               timeout=PIP_TIMEOUT, env=clean_env())
    assert proc.returncode == 0, f"pip install {requirement} failed:\n{proc.stderr[-3000:]}"


def in_venv(venv: Path, *argv: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    program = argv[0] if argv[0].startswith("/") else str(venv / "bin" / argv[0])
    return run([program, *argv[1:]], cwd=cwd, env=clean_env(**env))


@pytest.fixture()
def empty_folder(workdir: Path) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="user-", dir=workdir))
    yield path
    shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------- the artifacts


def test_the_sdist_and_the_wheel_carry_the_pinned_bundles(dists: dict[str, Path]) -> None:
    with zipfile.ZipFile(dists["wheel"]) as wheel:
        wheel_names = set(wheel.namelist())
        wheel_bundles = {folder: json.loads(wheel.read(f"{folder}/BUNDLE.json"))
                         for folder in BUNDLES}
        page_vue = wheel.read("realtime_app/static/vendor/vue.esm-browser.prod.js")
    with tarfile.open(dists["sdist"]) as sdist:
        root = sdist.getnames()[0].split("/")[0]
        sdist_names = {name.removeprefix(root + "/") for name in sdist.getnames()}
    for folder, (package, files) in BUNDLES.items():
        for name in files:
            assert f"{folder}/{name}" in wheel_names, (folder, name)
            assert f"{folder}/{name}" in sdist_names, (folder, name)
        bundle = wheel_bundles[folder]
        assert bundle["package"] == package
        assert bundle["version"] == locked_version(package)
        assert bundle["license"] == "MIT" and bundle["integrity"].startswith("sha512-")
    assert page_vue == (WEB_DIR / "node_modules/vue/dist/vue.esm-browser.prod.js").read_bytes()
    admin_ui = {n for n in wheel_names if n.startswith("socketio_core/admin_ui/")}
    assert any(n.endswith(".js") for n in admin_ui) and any(n.endswith(".css") for n in admin_ui)
    assert not any(n.endswith(".map") for n in admin_ui)  # source maps stay out (3 MB)
    # The library and its typing marker; no tests in the wheel.
    assert {"engineio_core/py.typed", "socketio_core/py.typed",
            "realtime_app/py.typed", "realtime_app/static/index.html"} <= wheel_names
    assert not any(name.startswith("tests/") for name in wheel_names)
    metadata = next(n for n in wheel_names if n.endswith(".dist-info/METADATA"))
    with zipfile.ZipFile(dists["wheel"]) as wheel:
        meta = wheel.read(metadata).decode()
    requires = [line for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    assert not [r for r in requires if r.startswith("Requires-Dist: redis") and "extra" not in r]
    for extra in EXTRAS:
        assert f"Provides-Extra: {extra}" in meta


def test_a_build_without_the_bundles_stops_with_what_to_run(
        workdir: Path, dists: dict[str, Path]) -> None:
    """The sdist unpacked and stripped of a bundle file: building its wheel must fail
    clearly, not ship a package whose page answers 503."""
    tree = workdir / "stripped"
    with tarfile.open(dists["sdist"]) as sdist:
        sdist.extractall(tree, filter="data")
    source = next(tree.iterdir())
    (source / "realtime_app/static/vendor/vue.esm-browser.prod.js").unlink()
    proc = run([sys.executable, "-m", "build", "--wheel", "--outdir",
                str(workdir / "stripped-dist"), str(source)], timeout=BUILD_TIMEOUT,
               env=clean_env())
    assert proc.returncode != 0
    assert "vue.esm-browser.prod.js" in proc.stdout + proc.stderr
    assert "npm ci" in proc.stdout + proc.stderr


# ---------------------------------------------------------------------- the installs


def test_bare_install_imports_and_commands(venv: Path, empty_folder: Path) -> None:
    proc = in_venv(venv, "python", "-c",
                   "import engineio_core, socketio_core, realtime_app, "
                   "socketio_core.client_bundle, realtime_app.app; "
                   "print(realtime_app.__file__)", cwd=empty_folder)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(str(venv)), proc.stdout  # the installed copy, not the tree
    for argv, expected in ((["realtime-app", "--help"], "JWT_SECRET"),
                           (["python", "-m", "socketio_core", "--help"], "--serve-client"),
                           (["python", "-m", "realtime_app", "--help"], "REDIS_URL"),
                           (["python", "-m", "engineio_core", "--help"], "usage")):
        proc = in_venv(venv, *argv, cwd=empty_folder)
        assert proc.returncode == 0, (argv, proc.stderr[-2000:])
        assert expected in proc.stdout, (argv, proc.stdout[:500])
    # redis is an extra: not installed here, and asking for Redis says what to install.
    assert in_venv(venv, "python", "-c", "import redis", cwd=empty_folder).returncode != 0
    proc = in_venv(venv, "realtime-app", cwd=empty_folder, DEV_MODE="1",
                   REDIS_URL="redis://127.0.0.1:1/0")
    assert proc.returncode == 2
    assert "pip install 'realtime-socketio[redis]'" in proc.stderr, proc.stderr


@pytest.mark.parametrize("extra", list(EXTRAS))
def test_each_extra(venv: Path, dists: dict[str, Path], empty_folder: Path,
                    extra: str) -> None:
    pip_install(venv, f"realtime-socketio[{extra}] @ {dists['wheel'].as_uri()}")
    proc = in_venv(venv, "python", "-c", EXTRAS[extra], cwd=empty_folder)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for argv in (["realtime-app", "--help"], ["python", "-m", "socketio_core", "--help"]):
        proc = in_venv(venv, *argv, cwd=empty_folder)
        assert proc.returncode == 0, (argv, proc.stderr[-2000:])


# ---------------------------------------------------------------------- what it serves


def get(server: ServerHandle, path: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(server.url + path, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_installed_gateway_serves_a_working_page(venv: Path, empty_folder: Path) -> None:
    env = clean_env(DEV_MODE="1", HOST="127.0.0.1", API_KEY=API_KEY, LOG_LEVEL="WARNING")
    with start_process("installed-gateway", [str(venv / "bin" / "realtime-app"), "--port", "0"],
                       path="/socket.io/", cwd=empty_folder, env=env) as gateway:
        vendored = {
            "/vendor/vue.js": WEB_DIR / "node_modules/vue/dist/vue.esm-browser.prod.js",
            "/vendor/socket.io.js":
                WEB_DIR / "node_modules/socket.io-client/dist/socket.io.esm.min.js",
        }
        for path, npm_file in vendored.items():
            status, headers, body = get(gateway, path)
            assert status == 200, (path, status, body[:300])
            assert headers["Content-Type"].startswith("text/javascript")
            assert body == npm_file.read_bytes(), path
        status, _, page = get(gateway, "/")
        assert status == 200 and b"/app.js" in page

        if not CHROMIUM.exists():
            pytest.skip("/usr/bin/chromium is missing: the page was checked over HTTP only")
        node = shutil.which("node")
        if node is None or not (INTEROP_DIR / "node_modules" / "playwright-core").is_dir():
            pytest.skip("needs node and playwright-core in tests/interop/node_modules")
        screenshot = Path(tempfile.mkstemp(prefix="installed-page-", suffix=".png")[1])
        try:
            proc = run([node, str(INTEROP_DIR / "gateway_browser.mjs"), gateway.url, API_KEY,
                        str(screenshot), "45000"], cwd=INTEROP_DIR, timeout=60)
            screenshot_size = screenshot.stat().st_size
        finally:
            screenshot.unlink(missing_ok=True)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        assert lines, f"no result (exit {proc.returncode}); stderr:\n{proc.stderr[-4000:]}\n" \
                      f"{gateway.diagnostics()}"
        result = json.loads(lines[-1])
        assert result["ok"], json.dumps(result, indent=1)
        assert result["alice"]["status"].startswith("Connected as alice")
        assert result["bob"]["status"].startswith("Connected as bob")
        assert result["text"] in result["bobMessage"]
        assert result["pageErrors"] == [] and result["consoleErrors"] == []
        assert result["requests"] == []
        assert screenshot_size > 1000


def test_installed_server_serves_the_client(venv: Path, empty_folder: Path) -> None:
    argv = [str(venv / "bin" / "python"), "-m", "socketio_core", "--port", "0",
            "--serve-client"]
    with start_process("installed-socketio", argv, path="/socket.io/", cwd=empty_folder,
                       env=clean_env()) as server:
        status, headers, body = get(server, "/socket.io/socket.io.min.js")
        assert status == 200
        assert headers["ETag"] == f'"{locked_version("socket.io-client")}"'
        npm = WEB_DIR / "node_modules/socket.io-client/dist/socket.io.min.js"
        assert body == npm.read_bytes()
