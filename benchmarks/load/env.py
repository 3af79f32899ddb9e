"""The harness's cache folder: a venv with python-socketio + uvicorn + uvloop (+ matplotlib
for the charts, redis for fanout2) and an npm folder with socket.io 4.8.4 +
socket.io-client (+ @socket.io/redis-adapter and node-redis for fanout2), installed on
first use from the pinned files beside this module and reinstalled when those change.

Location: ``$BENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/realtime-socketio-bench``, else
``~/.cache/realtime-socketio-bench``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
NPM_FILES = (HERE / "npm" / "package.json", HERE / "npm" / "package-lock.json")
STAMP = ".bench-stamp"


def cache_dir() -> Path:
    explicit = os.environ.get("BENCH_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "realtime-socketio-bench"


def _digest(*files: Path) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()


def _fresh(folder: Path, digest: str) -> bool:
    stamp = folder / STAMP
    return stamp.is_file() and stamp.read_text().strip() == digest


@dataclass
class Env:
    root: Path

    @property
    def venv_python(self) -> Path:
        return self.root / "venv" / "bin" / "python"

    @property
    def npm_dir(self) -> Path:
        return self.root / "npm"

    def venv_ready(self) -> bool:
        return _fresh(self.root / "venv", _digest(REQUIREMENTS)) and self.venv_python.exists()

    def npm_ready(self) -> bool:
        return _fresh(self.npm_dir, _digest(*NPM_FILES))

    def ensure_venv(self, log=print) -> None:
        if self.venv_ready():
            return
        venv = self.root / "venv"
        log(f"installing python-socketio, uvicorn, uvloop, matplotlib into {venv} (once)")
        if venv.exists():
            shutil.rmtree(venv)
        venv.parent.mkdir(parents=True, exist_ok=True)
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(self.venv_python), "-m", "pip", "install", "--quiet",
             "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
            check=True,
        )
        (venv / STAMP).write_text(_digest(REQUIREMENTS))

    def ensure_npm(self, log=print) -> None:
        if self.npm_ready():
            return
        log(f"installing socket.io 4.8.4, socket.io-client 4.8.4 and @socket.io/redis-adapter "
            f"8.3.0 into {self.npm_dir} (once)")
        if self.npm_dir.exists():
            shutil.rmtree(self.npm_dir)
        self.npm_dir.mkdir(parents=True)
        for f in NPM_FILES:
            shutil.copy(f, self.npm_dir / f.name)
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=self.npm_dir,
            check=True,
        )
        (self.npm_dir / STAMP).write_text(_digest(*NPM_FILES))


def get_env() -> Env:
    return Env(cache_dir())
