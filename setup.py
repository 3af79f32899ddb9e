"""Build step of the package: the pinned browser bundles go inside it.

Everything else is in pyproject.toml. The page of ``realtime-app`` needs Vue and the
socket.io client, and ``Server(serve_client=True)`` serves the client bundle; an installed
package has no ``web/node_modules``, so the build copies those files from the npm packages
that ``web/package-lock.json`` pins (``npm ci`` in ``web/`` installs them):

* ``realtime_app/static/vendor/``: ``vue.esm-browser.prod.js`` and Vue's ``LICENSE``;
* ``socketio_core/client-dist/``: the ``dist`` files of ``socket.io-client`` and its
  ``LICENSE`` (the page's ``/vendor/socket.io.js`` is its ``socket.io.esm.min.js``).

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

#: folder in the package -> (npm package, {file in the npm package: name in the folder})
BUNDLES: dict[str, tuple[str, dict[str, str]]] = {
    "realtime_app/static/vendor": ("vue", {
        "dist/vue.esm-browser.prod.js": "vue.esm-browser.prod.js",
        "LICENSE": "LICENSE",
    }),
    "socketio_core/client-dist": ("socket.io-client", {
        **{f"dist/{name}": name for name in (
            "socket.io.js", "socket.io.js.map",
            "socket.io.min.js", "socket.io.min.js.map",
            "socket.io.esm.min.js", "socket.io.esm.min.js.map",
            "socket.io.msgpack.min.js", "socket.io.msgpack.min.js.map",
        )},
        "LICENSE": "LICENSE",
    }),
}


class BundleMissing(SetupError):
    pass


def _locked(package: str) -> dict[str, str]:
    lock = json.loads((WEB / "package-lock.json").read_text())
    entry = lock.get("packages", {}).get(f"node_modules/{package}")
    if not entry:
        raise BundleMissing(f"web/package-lock.json does not pin {package}")
    return entry


def copy_bundles(target_root: Path) -> None:
    """Copy the pinned bundles under ``target_root`` (a build or release tree)."""
    for folder, (package, files) in BUNDLES.items():
        locked = _locked(package)
        installed_dir = WEB / "node_modules" / package
        try:
            installed = json.loads((installed_dir / "package.json").read_text())["version"]
        except (OSError, ValueError, KeyError):
            installed = None
        if installed != locked["version"]:
            found = f"{installed} is installed" if installed else "it is not installed"
            raise BundleMissing(
                f"the package needs {package} {locked['version']} from web/package-lock.json "
                f"but {found} in web/node_modules: run `npm ci` in web/ before building")
        destination = target_root / folder
        destination.mkdir(parents=True, exist_ok=True)
        for source, name in files.items():
            shutil.copyfile(installed_dir / source, destination / name)
        provenance = {"package": package, "version": locked["version"],
                      "integrity": locked.get("integrity"), "license": locked.get("license"),
                      "files": sorted(files.values())}
        (destination / "BUNDLE.json").write_text(json.dumps(provenance, indent=1) + "\n")


def check_bundles(tree: Path) -> None:
    """Building from an unpacked sdist: the bundles must be in it already."""
    for folder, (package, files) in BUNDLES.items():
        missing = [name for name in [*files.values(), "BUNDLE.json"]
                   if not (tree / folder / name).is_file()]
        if missing:
            raise BundleMissing(
                f"{folder}/ lacks {', '.join(missing)} ({package}): build from a source "
                "checkout after `npm ci` in web/, or from an sdist made that way")


def place_bundles(target_root: Path) -> None:
    if (WEB / "package-lock.json").is_file():
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
