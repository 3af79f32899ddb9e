"""``python -m benchmarks run``: start each server pinned to one core, drive it with the
load generator pinned to the other, repeat, and write JSON + markdown (+ PNG charts)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from . import report
from .env import Env, get_env
from .scenarios import DEFAULT_SCENARIOS, PROFILES, Case, build_cases, read_metric
from .servers import LABELS, REPO_ROOT, SERVER_NAMES, ServerError, pin, start_server

GENERATOR = Path(__file__).resolve().parent / "generator.mjs"
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
#: A generator above this share of its core may be what limits the numbers.
GENERATOR_SATURATED_PCT = 90.0
NOFILE = 65536
#: Our server's packages: copied at the start of a run (realtime_app: the gateway-pm cases).
OUR_PACKAGES = ("engineio_core", "socketio_core", "realtime_app")


# ---------------------------------------------------------------------- progress


class Progress:
    """One status line (a bar on a terminal, plain lines otherwise)."""

    def __init__(self, total: int, stream: Any = sys.stderr) -> None:
        self.total = total
        self.done = 0
        self.stream = stream
        self.tty = stream.isatty()
        self.label = ""
        self.detail = ""
        self.started = time.monotonic()
        self.step_started = self.started
        self._lock = threading.Lock()
        self._last_plain = ""

    def begin(self, label: str) -> None:
        with self._lock:
            self.label = label
            self.detail = "starting"
            self.step_started = time.monotonic()
        self.render(force=True)

    def update(self, detail: str) -> None:
        with self._lock:
            self.detail = detail
        self.render()

    def finish_step(self, summary: str) -> None:
        with self._lock:
            self.done += 1
            self.detail = summary
        self.render(force=True, newline=True)

    def render(self, force: bool = False, newline: bool = False) -> None:
        now = time.monotonic()
        width = 24
        filled = int(width * self.done / max(1, self.total))
        bar = "#" * filled + "-" * (width - filled)
        elapsed = now - self.started
        eta = ""
        if self.done:
            eta = f" eta {elapsed / self.done * (self.total - self.done):4.0f}s"
        text = (
            f"[{bar}] {self.done}/{self.total} {elapsed:4.0f}s{eta}  {self.label}: "
            f"{self.detail} ({now - self.step_started:.0f}s)"
        )
        if self.tty:
            columns = shutil.get_terminal_size((120, 20)).columns
            self.stream.write("\r" + text[: columns - 1].ljust(columns - 1))
            if newline:
                self.stream.write("\n")
            self.stream.flush()
        elif force and text != self._last_plain:
            self._last_plain = text
            self.stream.write(text + "\n")
            self.stream.flush()

    def message(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r" + " " * (shutil.get_terminal_size((120, 20)).columns - 1)
                              + "\r")
        self.stream.write(text + "\n")
        self.stream.flush()


# ---------------------------------------------------------------------- machine


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = max(soft, NOFILE)
    if hard != resource.RLIM_INFINITY and hard < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, target))
            return target
        except (ValueError, OSError):
            target = hard
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _run_text(argv: list[str], cwd: Path | None = None) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=20,
                              check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine_info(env: Env | None) -> dict[str, Any]:
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_total = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_total = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str] = {"python (ours)": platform.python_version()}
    try:
        import uvloop

        versions["uvloop (ours)"] = uvloop.__version__
    except ImportError:
        versions["uvloop (ours)"] = "missing: ours runs on plain asyncio"
    # The Redis client of our fanout2 nodes; without hiredis it parses replies in Python.
    for module in ("redis", "hiredis"):
        try:
            versions[f"{module} (ours)"] = importlib.metadata.version(module)
        except importlib.metadata.PackageNotFoundError:
            versions[f"{module} (ours)"] = "not installed"
    versions["node"] = _run_text(["node", "--version"])
    if env is not None and env.venv_ready():
        versions["python-socketio venv"] = _run_text([
            str(env.venv_python), "-c",
            "import importlib.metadata as m; print(', '.join(f'{p} {m.version(p)}' for p in "
            "('python-socketio', 'python-engineio', 'uvicorn', 'uvloop', 'websockets', 'redis')))",
        ])
    if env is not None and env.npm_ready():
        npm: list[str] = []
        for pkg in ("socket.io", "engine.io", "ws", "socket.io-client",
                    "@socket.io/redis-adapter", "redis"):
            with contextlib.suppress(OSError, ValueError):
                meta = json.loads((env.npm_dir / "node_modules" / pkg / "package.json")
                                  .read_text())
                npm.append(f"{pkg} {meta['version']}")
        versions["npm"] = ", ".join(npm)
    return {
        "cpu": cpu_model,
        "cores": os.cpu_count(),
        "memory": mem_total,
        "kernel": platform.release(),
        "os": platform.platform(),
        "git_commit": _run_text(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT),
        "git_dirty": bool(_run_text(["git", "status", "--porcelain", "--", *OUR_PACKAGES],
                                    cwd=REPO_ROOT)),
        "versions": versions,
        "taskset": shutil.which("taskset") is not None,
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }


def code_state() -> str:
    """HEAD, plus a hash of uncommitted changes to the server packages, if any."""
    head = _run_text(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT)
    diff = _run_text(["git", "diff", "HEAD", "--", *OUR_PACKAGES], cwd=REPO_ROOT)
    if diff:
        import hashlib

        head += "+dirty-" + hashlib.sha256(diff.encode()).hexdigest()[:8]
    return head


def snapshot_ours(dest: Path) -> Path:
    for package in OUR_PACKAGES:
        shutil.copytree(REPO_ROOT / package, dest / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def redis_ping(url: str, timeout: float = 2.0) -> str | None:
    """None when a Redis server answers PING at ``url`` (redis://host:port), else why not."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379),
                                      timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            answer = sock.recv(64)
    except OSError as exc:
        return f"{url}: {exc}"
    return None if answer.startswith(b"+PONG") else f"{url} answered {answer[:40]!r}"


def delete_redis_keys(url: str, prefix: str) -> int:
    """Delete every key starting with ``prefix`` (never FLUSHALL: the Redis may be shared)."""
    import redis

    pattern = "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"
    client = redis.Redis.from_url(url, socket_timeout=10)
    deleted = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += client.unlink(*batch)
                batch = []
        if batch:
            deleted += client.unlink(*batch)
    finally:
        client.close()
    return deleted


#: The gateway's settings in the gateway-pm cases (beside REDIS_URL, REDIS_PREFIX, the
#: secrets and NODE_ID): limits far above what the run sends, so none caps the measurement.
GATEWAY_ENV = {
    "LOG_LEVEL": "WARNING",
    "RATE_LIMIT_PRIVATE_MESSAGE": "1000000000",
    "RATE_LIMIT_DEFAULT": "1000000000",
    "MAX_STORED_MESSAGES": "100000",
    "MAX_STORED_MESSAGES_PER_SENDER": "100000",
    "ANOMALY_MESSAGES_PER_MINUTE": "1000000000",
    "ANOMALY_CONNECTIONS_PER_MINUTE": "1000000000",
    "SHUTDOWN_TIMEOUT_MS": "3000",
}


@contextlib.contextmanager
def case_nodes(
    case: Case, server: str, env: Env | None, cpu: int | None, log_dir: Path,
    snapshot: Path | None, redis_url: str, key: str, cleanup: dict[str, Any] | None = None,
) -> Any:
    """The server processes of one run of ``case``: yields (nodes, extra generator config).

    ``key`` names this run in Redis: fanout2's channel prefix, the gateway's REDIS_PREFIX
    (its keys are deleted when the nodes have stopped; ``cleanup["redis_keys_deleted"]``
    says how many).
    """
    extra: list[str] = list(case.server_args)
    config: dict[str, Any] = {}
    app_env: dict[str, str] = {}
    if case.app == "gateway":
        secret = uuid.uuid4().hex + uuid.uuid4().hex
        app_env = {**GATEWAY_ENV, "JWT_SECRET": secret, "API_KEY": uuid.uuid4().hex,
                   "REDIS_URL": redis_url, "REDIS_PREFIX": f"{key}:", **case.env}
        config = {"jwt_secret": secret, "redis_url": redis_url, "run_tag": key[-8:]}
    elif case.nodes > 1:
        extra += ["--redis", redis_url, "--redis-key", key]
    try:
        with contextlib.ExitStack() as stack:
            nodes = [
                stack.enter_context(start_server(
                    server, env, cpu, log_dir, ours_src=snapshot, extra_args=extra,
                    app=case.app,
                    app_env={**app_env, "NODE_ID": f"bench-node-{k + 1}"} if app_env else None))
                for k in range(case.nodes)
            ]
            yield nodes, config
    finally:
        if case.app == "gateway":
            try:
                deleted = delete_redis_keys(redis_url, f"{key}:")
            except Exception as exc:  # the run's numbers stand; say what was left behind
                deleted = -1
                print(f"could not delete the Redis keys {key}:*: {exc}", file=sys.stderr)
            if cleanup is not None:
                cleanup["redis_prefix"] = f"{key}:"
                cleanup["redis_keys_deleted"] = deleted


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


# ---------------------------------------------------------------------- one run


def run_generator(
    case: Case, ports: list[int], server_pids: list[int], env: Env | None,
    npm_dir: Path | None, cpu: int | None, progress: Progress,
    extra_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    config = {
        **case.generator,
        **(extra_config or {}),
        "port": ports[0],
        "server_pid": server_pids[0],
        "clk_tck": os.sysconf("SC_CLK_TCK"),
        "deadline": case.deadline,
        "path": "/socket.io/",
    }
    if len(ports) > 1:
        config["ports"] = ports
        config["server_pids"] = server_pids
    if npm_dir is not None:
        config["npm_dir"] = str(npm_dir)
    proc = subprocess.Popen(
        [*pin(cpu), "node", str(GENERATOR), json.dumps(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=REPO_ROOT,
        start_new_session=True,
    )
    errors: list[str] = []

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.startswith("PROGRESS "):
                progress.update(line[9:].strip())
            else:
                errors.append(line.rstrip())

    thread = threading.Thread(target=read_stderr, daemon=True)
    thread.start()
    try:
        stdout, _ = proc.communicate(timeout=case.deadline + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, _ = proc.communicate()
        return {"error": f"generator exceeded {case.deadline + 30:.0f}s and was killed"}
    thread.join(5)
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[7:])
            if errors:
                result["generator_stderr"] = errors[-10:]
            return result
    return {"error": f"generator exited {proc.returncode} without a result",
            "generator_stderr": errors[-20:]}


def _summary_line(case: Case, result: dict[str, Any]) -> str:
    if "error" in result:
        return "ERROR " + str(result["error"]).splitlines()[0][:120]
    parts = []
    for metric in case.metrics[:3]:
        value = read_metric(result, metric.key)
        if value is not None:
            parts.append(f"{metric.label} {report.fmt(value * metric.scale)} {metric.unit}")
    gen = result.get("generator_cpu_pct")
    if gen is not None:
        parts.append(f"gen CPU {gen:.0f}%")
    return ", ".join(parts)


# ---------------------------------------------------------------------- the run


def aggregate(cases: list[Case], servers: list[str], runs: list[dict[str, Any]]
              ) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for case in cases:
        per_server: dict[str, Any] = {}
        for server in case_servers(case, servers):
            results = [r["result"] for r in runs
                       if r["case"] == case.name and r["server"] == server
                       and "error" not in r["result"]]
            metrics: dict[str, Any] = {}
            for metric in case.metrics:
                values = [v * metric.scale for v in
                          (read_metric(r, metric.key) for r in results) if v is not None]
                if values:
                    metrics[metric.key] = {
                        "median": statistics.median(values),
                        "min": min(values),
                        "max": max(values),
                        "values": values,
                    }
            gen = [r.get("generator_cpu_pct") for r in results]
            per_server[server] = {
                "ok_runs": len(results),
                "metrics": metrics,
                "generator_saturated": any(g is not None and g > GENERATOR_SATURATED_PCT
                                           for g in gen),
            }
        ratios: dict[str, Any] = {}
        ours = per_server.get("ours", {}).get("metrics", {})
        for other in case_servers(case, servers):
            if other == "ours" or "ours" not in per_server:
                continue
            theirs = per_server[other]["metrics"]
            ratios[other] = {
                m.key: ours[m.key]["median"] / theirs[m.key]["median"]
                for m in case.metrics
                if m.key in ours and m.key in theirs and theirs[m.key]["median"]
            }
        summary[case.name] = {"servers": per_server, "ratio_ours_to": ratios}
    # Cases compared with another case of their scenario (gateway-pm: two nodes / one).
    for case in cases:
        if case.baseline is None or case.baseline not in summary:
            continue
        ours = summary[case.name]["servers"].get("ours", {}).get("metrics", {})
        base = summary[case.baseline]["servers"].get("ours", {}).get("metrics", {})
        summary[case.name]["baseline"] = case.baseline
        summary[case.name]["ratio_to_baseline"] = {
            key: ours[key]["median"] / base[key]["median"]
            for key in ours if key in base and base[key]["median"]
        }
    return summary


def case_servers(case: Case, servers: list[str]) -> list[str]:
    """The servers of the run that this case runs against."""
    return [s for s in servers if case.servers is None or s in case.servers]


def run(args: Any) -> int:
    profile = PROFILES[args.profile]
    if args.reps is not None:
        profile = type(profile)(**{**profile.__dict__, "reps": args.reps})
    if args.fanout_sizes:
        sizes = tuple(int(s) for s in args.fanout_sizes.split(",") if s)
        profile = type(profile)(**{**profile.__dict__, "fanout_sizes": sizes})
    for option, setting in (("gateway_pairs", "gateway_pairs"),
                            ("gateway_window", "gateway_window")):
        if getattr(args, option, None):
            profile = type(profile)(**{**profile.__dict__, setting: getattr(args, option)})
    scenarios = args.scenarios or list(DEFAULT_SCENARIOS)
    servers = args.servers.split(",") if args.servers else list(SERVER_NAMES)
    if args.profile == "smoke" and not args.servers:
        servers = ["ours"]
    for name in servers:
        if name not in SERVER_NAMES:
            print(f"unknown server {name!r}; expected some of {SERVER_NAMES}", file=sys.stderr)
            return 2
    if shutil.which("node") is None:
        print("node is required (the load generator runs on Node.js)", file=sys.stderr)
        return 2
    try:
        cases = build_cases(scenarios, profile)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    if getattr(args, "cases", None):
        wanted = set(args.cases.split(","))
        unknown = wanted - {c.name for c in cases}
        if unknown:
            print(f"unknown case(s) {sorted(unknown)}; these scenarios have "
                  f"{[c.name for c in cases]}", file=sys.stderr)
            return 2
        cases = [c for c in cases if c.name in wanted]
    # Servers no case runs against (the gateway cases are ours only) are left out.
    servers = [s for s in servers if any(s in case_servers(c, [s]) for c in cases)]
    if not servers:
        print("no case of these scenarios runs against these servers", file=sys.stderr)
        return 2
    if any(c.nodes > 1 or c.app == "gateway" for c in cases):
        why = redis_ping(args.redis_url)
        if why is not None:
            names = sorted({c.scenario for c in cases if c.nodes > 1 or c.app == "gateway"})
            print(f"{', '.join(names)} need(s) Redis ({why}); use --redis-url",
                  file=sys.stderr)
            return 2

    env = get_env()
    if any(s != "ours" for s in servers):
        if args.no_install:
            if not (env.venv_ready() and env.npm_ready()):
                print("the harness cache is not installed: run `python -m benchmarks install`",
                      file=sys.stderr)
                return 2
        else:
            env.ensure_npm(log=lambda m: print(m, file=sys.stderr))
            env.ensure_venv(log=lambda m: print(m, file=sys.stderr))
    npm_dir = find_client_lib(env)
    if npm_dir is None:
        skipped = [c.name for c in cases if c.needs_client_lib]
        if skipped:
            print(f"socket.io-client not found: skipping {', '.join(skipped)}", file=sys.stderr)
        cases = [c for c in cases if not c.needs_client_lib]

    nofile = raise_nofile()
    with contextlib.suppress(OSError, AttributeError):
        if args.generator_cpu is not None and pin(args.generator_cpu):
            os.sched_setaffinity(0, {args.generator_cpu})

    out_dir = Path(args.out) if args.out else RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    run_id = time.strftime("%Y%m%d-%H%M%S")
    if args.profile != "full":
        run_id += f"-{args.profile}"
    meta = {
        "run_id": run_id,
        "profile": args.profile,
        "scenarios": scenarios,
        "servers": servers,
        "labels": {s: LABELS[s] for s in servers},
        "reps": profile.reps,
        "profile_settings": profile.__dict__ | {"fanout_sizes": list(profile.fanout_sizes)},
        "server_cpu": args.server_cpu,
        "redis_url": args.redis_url if any(c.nodes > 1 or c.app == "gateway" for c in cases)
        else None,
        "generator_cpu": args.generator_cpu,
        "machine": machine_info(env),
        "loadavg_start": loadavg(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }
    meta["machine"]["nofile"] = nofile
    cases_meta = [
        {"name": c.name, "scenario": c.scenario, "title": c.title, "notes": c.notes,
         "metrics": [m.__dict__ for m in c.metrics], "servers": case_servers(c, servers),
         "baseline": c.baseline, "nodes": c.nodes, "app": c.app, "env": c.env}
        for c in cases
    ]

    total = profile.reps * sum(len(case_servers(c, servers)) for c in cases)
    progress = Progress(total)
    runs: list[dict[str, Any]] = []
    log_dir = Path(tempfile.mkdtemp(prefix="socketio-bench-logs-"))
    # Our server runs from a copy of its packages taken now, so that edits to the work tree
    # during a long run cannot mix two versions of the code into one set of results.
    if getattr(args, "ours_src", None):
        snapshot = Path(args.ours_src).resolve()
        meta["ours_code"] = f"{snapshot} (--ours-src)"
    else:
        meta["ours_code"] = code_state()
        snapshot = snapshot_ours(log_dir / "ours-src")
    progress.message(f"{total} runs: {len(cases)} cases x {len(servers)} servers x "
                     f"{profile.reps} reps; server on CPU {args.server_cpu}, generator on CPU "
                     f"{args.generator_cpu}; logs in {log_dir}")
    for rep in range(profile.reps):
        for case in cases:
            # Rotate the server order each repetition so no server always runs first.
            order = servers[rep % len(servers):] + servers[: rep % len(servers)]
            for server in case_servers(case, order):
                progress.begin(f"rep {rep + 1} {case.name} {server}")
                t0 = time.monotonic()
                load_before = loadavg()
                # A channel / key prefix of this run only: the Redis server may be shared.
                key = f"bench-{run_id}-{rep + 1}-{server}-{uuid.uuid4().hex[:8]}"
                cleanup: dict[str, Any] = {}
                try:
                    with case_nodes(case, server, env, args.server_cpu, log_dir, snapshot,
                                    args.redis_url, key, cleanup) as (nodes, extra_config):
                        result = run_generator(case, [n.port for n in nodes],
                                               [n.pid for n in nodes], env, npm_dir,
                                               args.generator_cpu, progress, extra_config)
                        exited = [n for n in nodes if n.proc.poll() is not None]
                        if "error" in result or exited:
                            result.setdefault("error", "server exited during the run")
                            result["server_log"] = "\n".join(n.log_tail() for n in nodes)
                except ServerError as exc:
                    result = {"error": str(exc)}
                runs.append({
                    "case": case.name,
                    "server": server,
                    "rep": rep + 1,
                    "wall_s": time.monotonic() - t0,
                    "loadavg_before": load_before,
                    **cleanup,
                    "result": result,
                })
                progress.finish_step(_summary_line(case, result))
                time.sleep(0.3)
    meta["loadavg_end"] = loadavg()
    meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %z")
    meta["elapsed_s"] = time.monotonic() - progress.started
    data = {"meta": meta, "cases": cases_meta, "runs": runs,
            "summary": aggregate(cases, servers, runs)}
    json_path = out_dir / f"{run_id}.json"
    json_path.write_text(json.dumps(data, indent=1))
    md_path = out_dir / f"{run_id}.md"
    charts: list[Path] = []
    if not args.no_charts:
        charts = render_charts(env, json_path, out_dir, progress)
    md_path.write_text(report.markdown(data, [c.name for c in charts]))
    progress.message(f"\nwrote {json_path}\nwrote {md_path}")
    for chart in charts:
        progress.message(f"wrote {chart}")
    print(report.markdown_tables(data))
    failed = [r for r in runs if "error" in r["result"]]
    if failed:
        progress.message(f"{len(failed)} run(s) failed; see the JSON for details")
        return 1
    return 0


def find_client_lib(env: Env) -> Path | None:
    """An npm folder with socket.io-client: the harness cache, or the interop tests' own."""
    for folder in (env.npm_dir, REPO_ROOT / "tests" / "interop"):
        if (folder / "node_modules" / "socket.io-client" / "package.json").is_file():
            return folder
    return None


def render_charts(env: Env, json_path: Path, out_dir: Path, progress: Progress) -> list[Path]:
    python = None
    try:
        import matplotlib  # noqa: F401

        python = sys.executable
    except ImportError:
        if env.venv_ready():
            python = str(env.venv_python)
    if python is None:
        progress.message("matplotlib not found: no charts (install the harness cache)")
        return []
    proc = subprocess.run(
        [python, "-m", "benchmarks.load.charts", str(json_path), str(out_dir)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "MPLBACKEND": "Agg"},
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        progress.message(f"charts failed:\n{proc.stderr[-2000:]}")
        return []
    return [Path(line) for line in proc.stdout.splitlines() if line.endswith(".png")]
