"""``python -m benchmarks profile CASE``: our server under one load case, sampled by py-spy.

Starts our benchmark app pinned to the server core, runs the generator for the case,
and attaches ``py-spy record`` (pip install py-spy) for the measurement window only, so
connection set-up is left out. Writes the collapsed stacks (``.txt``, flamegraph input)
and a summary of the hottest functions, self and inclusive (``-top.txt``).

The gateway-pm cases start their ``python -m realtime_app`` nodes as ``run`` does (Redis
at ``--redis-url``, a key prefix of this run, deleted afterwards) and sample every node at
once: one ``-node<N>`` pair of files per node (node 1 holds the senders, the last node
the receivers).
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
import uuid
from pathlib import Path
from typing import Any

from .harness import GENERATOR, RESULTS_DIR, Progress, case_nodes, raise_nofile, redis_ping
from .scenarios import GATEWAY_VARIANTS, PROFILES, build_cases
from .servers import REPO_ROOT, pin


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


#: Where a gateway node's time goes: a sample counts for the innermost of these frames on
#: its stack (so "private-message handler, the rest" is what the handler does besides the
#: others: validation, the emits, the ack), else for GENERIC_AREAS, else the event loop.
GATEWAY_AREAS = (
    ("rate limit (Lua INCR)", "Gateway._within_rate_limit"),
    ("store_message (Lua)", "RedisStore.store_message"),
    ("per-minute stats (pipeline)", "Gateway._record_minute"),
    ("ack: delete the stored copy (Lua)", "Gateway._ack_stored"),
    ("deliver to the target's sockets", "Gateway._deliver_local"),
    ("private-message handler, the rest", "Gateway._event_handler.<locals>.handler"),
    ("adapter writer (XADD, PUBLISH pipeline)", "RedisStreamsAdapterFactory._run_publisher"),
    ("adapter writer (PUBLISH)", "RedisAdapterFactory._run_publisher"),
    ("adapter stream reader (XREAD)", "RedisStreamsAdapterFactory._run_reader"),
    ("adapter pub/sub subscriber", "RedisAdapterFactory._run_subscriber"),
)
#: Counted only when none of GATEWAY_AREAS is on the stack. redis-py sends each command
#: from a task of its own (asyncio.wait_for on Python 3.11), so its writes show up here.
GENERIC_AREAS = (
    ("redis-py: sending commands (own task)", "AbstractConnection._send_packed_command"),
    ("redis-py, other", "redis/"),
    ("Socket.IO / Engine.IO / WebSocket (reading, writing, acks)", "engineio_core/"),
    ("Socket.IO / Engine.IO / WebSocket (reading, writing, acks)", "socketio_core/"),
)


def breakdown(collapsed: Path, areas: tuple[tuple[str, str], ...] = GATEWAY_AREAS) -> str:
    """Shares of the samples by area (see GATEWAY_AREAS); the rest is the event loop."""
    shares: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        area = "event loop (uvloop, native)"
        frames = stack.split(";")
        # Below the event loop only (engineio_core.run is the root of every stack).
        loop = max((k for k, f in enumerate(frames) if f.startswith("Runner.run ")),
                   default=-1)
        frames = frames[loop + 1:]
        for kinds in (areas, GENERIC_AREAS):
            found = next((label for frame in reversed(frames) for label, needle in kinds
                          if needle in frame), None)
            if found is not None:
                area = found
                break
        shares[area] += n
    lines = ["by area (innermost match on the stack):"]
    lines += [f"{100 * n / max(1, total):5.1f}%  {label}" for label, n in shares.most_common()]
    return "\n".join(lines) + "\n\n"


def profile(args: Any) -> int:
    py_spy = find_py_spy()
    if py_spy is None:
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    profile_settings = type(PROFILES["full"])(**{
        **PROFILES["full"].__dict__, "gateway_cases": tuple(GATEWAY_VARIANTS)})
    cases = {c.name: c for c in build_cases(["fanout", "echo", "connect", "memory",
                                             "gateway-pm"], profile_settings)}
    case = cases.get(args.case)
    if case is None:
        print(f"unknown case {args.case!r}; expected one of {sorted(cases)}", file=sys.stderr)
        return 2
    if case.app == "gateway" and (why := redis_ping(args.redis_url)) is not None:
        print(f"{case.name} needs Redis ({why}); use --redis-url", file=sys.stderr)
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
    key = f"bench-profile-{uuid.uuid4().hex[:8]}"
    with case_nodes(case, "ours", None, args.server_cpu, log_dir, None, args.redis_url,
                    key) as (nodes, extra_config):
        config = {**case.generator, **extra_config, "port": nodes[0].port,
                  "server_pid": nodes[0].pid, "clk_tck": os.sysconf("SC_CLK_TCK"),
                  "deadline": case.deadline}
        if len(nodes) > 1:
            config["ports"] = [n.port for n in nodes]
            config["server_pids"] = [n.pid for n in nodes]
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
        # Every node at once, each by its own py-spy.
        stems = [stem] if len(nodes) == 1 else [
            stem.parent / f"{stem.name}-node{k + 1}" for k in range(len(nodes))]
        spies = [
            subprocess.Popen(
                [py_spy, "record", "--pid", str(node.pid), "--duration", str(int(duration)),
                 "--rate", "250", "--format", "raw", "--output", str(s.with_suffix(".txt")),
                 "--nonblocking"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for node, s in zip(nodes, stems, strict=True)
        ]
        spy_errors = [spy.communicate(timeout=duration + 60)[1] for spy in spies]
        stdout, _ = gen.communicate(timeout=case.deadline)
    for spy, s, err in zip(spies, stems, spy_errors, strict=True):
        if spy.returncode != 0 or not s.with_suffix(".txt").exists():
            print(f"py-spy failed for {s.name}:\n{err[-2000:]}", file=sys.stderr)
            return 1
    result = next((json.loads(line[7:]) for line in stdout.splitlines()
                   if line.startswith("RESULT ")), {})
    header = (f"ours under {case.name} ({case.title}); sampled for {duration:g}s with py-spy "
              f"--nonblocking at 250 Hz\nrun: "
              + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in result.items() if not isinstance(v, dict)) + "\n\n")
    tops = []
    for k, s in enumerate(stems):
        top = s.parent / (s.name + "-top.txt")
        which = f"node {k + 1} of {len(stems)}\n" if len(stems) > 1 else ""
        areas = breakdown(s.with_suffix(".txt")) if case.app == "gateway" else ""
        top.write_text(header + which + areas + summarize(s.with_suffix(".txt")))
        tops.append(top)
    progress.finish_step("wrote " + ", ".join(str(t) for t in tops))
    for top in tops:
        print(top.read_text())
    return 0
