"""``python -m benchmarks profile CASE``: our server under one load case, sampled by py-spy.

Starts our benchmark app pinned to the server core, runs the generator for the case,
and attaches ``py-spy record`` (pip install py-spy) for the measurement window only, so
connection set-up is left out. Writes the collapsed stacks (``.txt``, flamegraph input)
and a summary of the hottest functions, self and inclusive (``-top.txt``).
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .harness import GENERATOR, RESULTS_DIR, Progress, raise_nofile
from .scenarios import PROFILES, build_cases
from .servers import REPO_ROOT, pin, start_server


def find_py_spy() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


def summarize(collapsed: Path, top: int = 30) -> str:
    """Self and inclusive shares of the hottest functions in py-spy's raw output."""
    self_samples: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = []
        for frame in stack.split(";"):
            name, _, location = frame.partition(" (")
            path = location.rstrip(")").rsplit(":", 1)[0]
            frames.append(f"{name} ({'/'.join(Path(path).parts[-2:])})")
        self_samples[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    lines = [f"{total} samples (on-CPU Python stacks; native time is charged to the caller)",
             "", "self:"]
    lines += [f"{100 * n / total:5.1f}%  {f}" for f, n in self_samples.most_common(top)]
    lines += ["", "inclusive:"]
    lines += [f"{100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"


def profile(args: Any) -> int:
    py_spy = find_py_spy()
    if py_spy is None:
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    profile_settings = PROFILES["full"]
    cases = {c.name: c for c in build_cases(["fanout", "echo", "connect", "memory"],
                                            profile_settings)}
    case = cases.get(args.case)
    if case is None:
        print(f"unknown case {args.case!r}; expected one of {sorted(cases)}", file=sys.stderr)
        return 2
    raise_nofile()
    out_dir = Path(args.out) if args.out else RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"profile-{time.strftime('%Y%m%d-%H%M%S')}-ours-{case.name}"
    # The connect and memory cases have no timed window: sample their first second.
    duration = float(case.generator.get("duration", 1))
    log_dir = Path(tempfile.mkdtemp(prefix="socketio-bench-profile-"))
    progress = Progress(1)
    progress.begin(f"profile {case.name}")
    with start_server("ours", None, args.server_cpu, log_dir) as server:
        config = {**case.generator, "port": server.port, "server_pid": server.pid,
                  "clk_tck": os.sysconf("SC_CLK_TCK"), "deadline": case.deadline}
        gen = subprocess.Popen(
            [*pin(args.generator_cpu), "node", str(GENERATOR), json.dumps(config)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT,
        )
        measuring = threading.Event()

        def watch() -> None:
            assert gen.stderr is not None
            for line in gen.stderr:
                if line.startswith("PROGRESS "):
                    progress.update(line[9:].strip())
                    if "measuring" in line:
                        measuring.set()

        threading.Thread(target=watch, daemon=True).start()
        if not measuring.wait(case.deadline):
            gen.kill()
            print("the generator never reached its measurement window", file=sys.stderr)
            return 1
        raw = stem.with_suffix(".txt")
        spy = subprocess.run(
            [py_spy, "record", "--pid", str(server.pid), "--duration", str(int(duration)),
             "--rate", "250", "--format", "raw", "--output", str(raw), "--nonblocking"],
            capture_output=True, text=True, check=False,
        )
        stdout, _ = gen.communicate(timeout=case.deadline)
    if spy.returncode != 0 or not raw.exists():
        print(f"py-spy failed:\n{spy.stderr[-2000:]}", file=sys.stderr)
        return 1
    result = next((json.loads(line[7:]) for line in stdout.splitlines()
                   if line.startswith("RESULT ")), {})
    header = (f"ours under {case.name} ({case.title}); sampled for {duration:g}s with py-spy "
              f"--nonblocking at 250 Hz\nrun: "
              + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in result.items() if not isinstance(v, dict)) + "\n\n")
    top = stem.parent / (stem.name + "-top.txt")
    top.write_text(header + summarize(raw))
    progress.finish_step(f"wrote {top}")
    print(top.read_text())
    return 0
