"""Build step of the package: the pinned browser bundles go inside it.

Everything else is in pyproject.toml. The page of ``realtime-app`` needs Vue and the
socket.io client, and ``Server(serve_client=True)`` serves the client bundle; an installed
package has no ``web/node_modules``, so the build copies those files from the npm packages
that ``web/package-lock.json`` pins (``npm ci`` in ``web/`` installs them):

* ``realtime_app/static/vendor/``: ``vue.esm-browser.prod.js`` and Vue's ``LICENSE``;
* ``socketio_core/client-dist/``: the ``dist`` files of ``socket.io-client`` and its
  ``LICENSE`` (the page's ``/vendor/socket.io.js`` is its ``socket.io.esm.min.js``);
* ``socketio_core/admin_ui/``: the built Admin UI (``ui/dist`` of ``@socket.io/admin-ui``,
  without its source maps) and its ``LICENSE``, for ``instrument(..., serve_ui_at=...)``
  and the gateway's ADMIN_UI_PATH.

Each folder gets a ``BUNDLE.json`` that says which package, version and lock integrity the
files came from. The files are written into the build trees only (the wheel's
``build/lib`` and the sdist's release tree), never into the source tree: a checkout keeps
serving ``web/node_modules`` and cannot serve a stale copy. Building from an unpacked sdist
finds them already in place. Without them the build stops with what to run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist
from setuptools.errors import SetupError

ROOT = Path(__file__).resolve().parent
WEB = ROOT / "web"

#: folder in the package -> (npm folder with the lock, npm package,
#: {file or folder/ in the npm package: name in the folder}); a folder is copied whole,
#: without source maps.
BUNDLES: dict[str, tuple[Path, str, dict[str, str]]] = {
    "realtime_app/static/vendor": (WEB, "vue", {
        "dist/vue.esm-browser.prod.js": "vue.esm-browser.prod.js",
        "LICENSE": "LICENSE",
    }),
    "socketio_core/client-dist": (WEB, "socket.io-client", {
        **{f"dist/{name}": name for name in (
            "socket.io.js", "socket.io.js.map",
            "socket.io.min.js", "socket.io.min.js.map",
            "socket.io.esm.min.js", "socket.io.esm.min.js.map",
            "socket.io.msgpack.min.js", "socket.io.msgpack.min.js.map",
        )},
        "LICENSE": "LICENSE",
    }),
    "socketio_core/admin_ui": (WEB, "@socket.io/admin-ui", {
        "ui/dist/": ".",
        "LICENSE": "LICENSE",
    }),
}


class BundleMissing(SetupError):
    pass


def _locked(npm_dir: Path, package: str) -> dict[str, str]:
    lock = json.loads((npm_dir / "package-lock.json").read_text())
    entry = lock.get("packages", {}).get(f"node_modules/{package}")
    if not entry:
        raise BundleMissing(f"{npm_dir.relative_to(ROOT)}/package-lock.json does not pin {package}")
    return entry


def _copy(source: Path, destination: Path) -> list[str]:
    """Copy a file, or a folder without its source maps; the names written."""
    if source.is_file():
        shutil.copyfile(source, destination)
        return [destination.name]
    written = []
    for file in sorted(source.rglob("*")):
        if file.is_file() and file.suffix != ".map":
            target = destination / file.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, target)
            written.append(str(file.relative_to(source)))
    return written


def copy_bundles(target_root: Path) -> None:
    """Copy the pinned bundles under ``target_root`` (a build or release tree)."""
    for folder, (npm_dir, package, files) in BUNDLES.items():
        where = npm_dir.relative_to(ROOT)
        locked = _locked(npm_dir, package)
        installed_dir = npm_dir / "node_modules" / package
        try:
            installed = json.loads((installed_dir / "package.json").read_text())["version"]
        except (OSError, ValueError, KeyError):
            installed = None
        if installed != locked["version"]:
            found = f"{installed} is installed" if installed else "it is not installed"
            raise BundleMissing(
                f"the package needs {package} {locked['version']} from {where}/package-lock.json "
                f"but {found} in {where}/node_modules: run `npm ci` in {where}/ before building")
        destination = target_root / folder
        destination.mkdir(parents=True, exist_ok=True)
        written: list[str] = []
        for source, name in files.items():
            written += _copy(installed_dir / source, destination / name)
        provenance = {"package": package, "version": locked["version"],
                      "integrity": locked.get("integrity"), "license": locked.get("license"),
                      "lock": f"{where}/package-lock.json", "files": sorted(written)}
        (destination / "BUNDLE.json").write_text(json.dumps(provenance, indent=1) + "\n")


def check_bundles(tree: Path) -> None:
    """Building from an unpacked sdist: the bundles must be in it already."""
    for folder, (_, package, _) in BUNDLES.items():
        try:
            names = json.loads((tree / folder / "BUNDLE.json").read_text())["files"]
        except (OSError, ValueError, KeyError):
            names = ["BUNDLE.json"]
        missing = [name for name in names if not (tree / folder / name).is_file()]
        if missing:
            raise BundleMissing(
                f"{folder}/ lacks {', '.join(missing)} ({package}): build from a source "
                "checkout after `npm ci` in web/ and tests/interop/, or from an sdist made so")


def place_bundles(target_root: Path) -> None:
    if all((npm_dir / "package-lock.json").is_file() for npm_dir, _, _ in BUNDLES.values()):
        copy_bundles(target_root)
    else:
        check_bundles(ROOT)
        if target_root != ROOT:
            for folder in BUNDLES:
                shutil.copytree(ROOT / folder, target_root / folder, dirs_exist_ok=True)


class BuildPyWithBundles(build_py):
    def run(self) -> None:
        super().run()
        # An editable install runs from the checkout, which serves web/node_modules.
        if not getattr(self, "editable_mode", False):
            place_bundles(Path(self.build_lib))


class SdistWithBundles(sdist):
    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        place_bundles(Path(base_dir))


setup(cmdclass={"build_py": BuildPyWithBundles, "sdist": SdistWithBundles})
