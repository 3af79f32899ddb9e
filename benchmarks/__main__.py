"""``python -m benchmarks``: the load benchmarks (the micro ones are ``pytest benchmarks/micro``).

  python -m benchmarks run [SCENARIO...]     fanout echo connect memory (default: these)
                                             fanout2 (two nodes + Redis: by name only)
                                             gateway-pm (realtime_app private messages,
                                             one node vs two: by name only)
                                             scale (every fd the limit allows: by name)
  python -m benchmarks run --quick fanout    shorter, one repetition (for development)
  python -m benchmarks run --smoke           tiny, our server only (the test suite's check)
  python -m benchmarks install               install the competitors into the cache folder
  python -m benchmarks report RESULTS.json   print the tables of a run again (and re-chart)
  python -m benchmarks profile CASE          py-spy profile of our server under a case
                                             (fanout-1000, fanout-5000, echo,
                                             gateway-pm-2nodes, ...)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run load scenarios against the servers")
    run.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                     help="fanout, echo, connect, memory (default: these four); fanout2 "
                     "(two nodes sharing Redis), gateway-pm (the gateway's private "
                     "messages, one node vs two) and scale (as many connections as the "
                     "file-descriptor limit allows) only when named")
    group = run.add_mutually_exclusive_group()
    group.add_argument("--quick", dest="profile", action="store_const", const="quick",
                       help="shorter runs, 1 repetition, 1,000-client fan-out only")
    group.add_argument("--smoke", dest="profile", action="store_const", const="smoke",
                       help="tiny runs against our server only, no install, no charts")
    run.set_defaults(profile="full")
    run.add_argument("--servers", help="comma-separated: ours,python-socketio,node")
    run.add_argument("--reps", type=int, help="repetitions (default 3; quick and smoke: 1)")
    run.add_argument("--fanout-sizes", help="comma-separated room sizes (default 1000,5000)")
    run.add_argument("--out", help="results folder (default benchmarks/results)")
    run.add_argument("--no-charts", action="store_true", help="skip the PNG charts")
    run.add_argument("--no-install", action="store_true",
                     help="never install into the cache folder (fail if it is missing)")
    run.add_argument("--server-cpu", type=int, default=0, help="core of the server (0)")
    run.add_argument("--generator-cpu", type=int, default=1, help="core of the generator (1)")
    run.add_argument("--redis-url", default="redis://127.0.0.1:6379",
                     help="Redis of fanout2 and gateway-pm (redis://127.0.0.1:6379)")
    run.add_argument("--gateway-pairs", type=int,
                     help="gateway-pm: sender/receiver pairs (default 20)")
    run.add_argument("--gateway-window", type=int,
                     help="gateway-pm: acked messages in flight per sender (default 2)")
    run.add_argument("--ours-src", help="run our server from this folder's engineio_core, "
                     "socketio_core and realtime_app (A/B experiments) instead of a copy of "
                     "the work tree's")
    run.add_argument("--cases", help="comma-separated case names to keep (e.g. "
                     "gateway-pm-1node,gateway-pm-2nodes)")

    sub.add_parser("install", help="install python-socketio, socket.io etc. into the cache")

    prof = sub.add_parser("profile", help="py-spy profile of our server under one case")
    prof.add_argument("case", help="fanout-1000, fanout-5000, echo, connect-websocket, memory, "
                      "gateway-pm-2nodes (or another gateway-pm case)")
    prof.add_argument("--redis-url", default="redis://127.0.0.1:6379",
                      help="Redis of the gateway-pm cases")
    prof.add_argument("--out", help="output folder (default benchmarks/results)")
    prof.add_argument("--server-cpu", type=int, default=0)
    prof.add_argument("--generator-cpu", type=int, default=1)

    rep = sub.add_parser("report", help="print the tables of a results JSON (and re-chart)")
    rep.add_argument("json", type=Path)
    rep.add_argument("--charts", action="store_true", help="write the PNG charts again")
    args = parser.parse_args(argv)
    if args.command == "run" and args.profile == "smoke":
        args.no_charts = True
        args.no_install = True
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "install":
        from .load.env import get_env

        env = get_env()
        env.ensure_npm()
        env.ensure_venv()
        print(f"ready: {env.root}")
        return 0
    if args.command == "report":
        from .load import report

        data = json.loads(args.json.read_text())
        if args.charts:
            from .load.env import get_env
            from .load.harness import Progress, render_charts

            charts = render_charts(get_env(), args.json, args.json.parent, Progress(0))
            args.json.with_suffix(".md").write_text(report.markdown(data, [c.name for c in charts]))
        print(report.markdown_tables(data))
        return 0
    if args.command == "profile":
        from .load.profile import profile

        return profile(args)
    from .load.harness import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
