"""``python -m tests.abuse.report [report.json]``: the last abuse run as a Markdown table.

Reads ``$ABUSE_REPORT`` (default /tmp/abuse-report.json), written by the abuse suite.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .support import report_path

#: Attack-specific measurements shown in the notes column, when present.
NOTES = (
    ("post_s", "POST answered in {} s"),
    ("session_closed", "session closed: {}"),
    ("log_lines", "{} log lines"),
    ("stored", "{} stored"),
    ("non_readers_still_connected", "{} non-readers still connected"),
    ("broadcast_rate", "{}/s sent"),
    ("broadcast_p99_ms", "broadcast p99 {} ms"),
    ("head_closed", "heads closed {}"),
    ("body_closed", "bodies closed {}"),
    ("spam_accepted", "spam accepted {}"),
    ("spam_refused", "refused {}"),
    ("legit_delivered", "legit delivered: {}"),
    ("log_errors", "{} ERROR/traceback lines"),
    ("status_line", "got `{}`"),
    ("send", "upload: {}"),
    ("close_code", "close code {}"),
    ("close", "closed: {}"),
    ("connected", "{} connected"),
    ("rss_with_connections_mib", "{} MiB while connected"),
    ("rss_after_drop_ratio", "after drop x{} of before"),
)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _notes(entry: dict[str, Any]) -> str:
    parts = []
    for key, template in NOTES:
        value = entry.get(key)
        if value is None or value == "" or value == {}:
            continue
        if key == "close" and not entry.get("disconnected"):
            continue
        parts.append(template.format(_cell(value)))
    if entry.get("outcome") == "failed" and entry.get("failure"):
        parts.append("fails: " + entry["failure"].replace("|", "\\|")[:140])
    return "; ".join(parts).replace("|", "\\|")


def render(report: dict[str, Any]) -> str:
    run = report.get("run", {})
    lines = [
        f"Abuse suite run of {run.get('started', '?')} ({'full' if run.get('full') else 'default'}"
        f" scale, {'Redis' if run.get('redis') else 'memory'} store, {run.get('cpus', '?')} CPUs)."
        " Worst latencies are the longest /healthz answer (a proxy for the server's loop stall)"
        " and the longest ack or delivery of the normal clients' private messages.",
        "",
        "| Attack | Result | RSS growth (MiB) | Peak RSS (MiB) | Worst /healthz (ms) "
        "| Normal clients worst / p99 (ms) | Served | Notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for entry in report.get("results", []):
        growth = entry.get("rss_growth_mib")
        peak_growth = entry.get("rss_peak_growth_mib")
        growth_text = _cell(growth)
        if peak_growth is not None and growth is not None and peak_growth > growth + 1:
            growth_text += f" (peak +{peak_growth})"
        lines.append("| " + " | ".join([
            str(entry.get("attack", entry.get("test"))).replace("|", "\\|"),
            {"passed": "pass", "failed": "**FAIL**"}.get(entry.get("outcome", ""),
                                                          _cell(entry.get("outcome"))),
            growth_text,
            _cell(entry.get("rss_peak_mib")),
            _cell(entry.get("healthz_worst_ms")),
            f"{_cell(entry.get('clients_worst_ms'))} / {_cell(entry.get('clients_p99_ms'))}",
            _cell(entry.get("served")),
            _notes(entry),
        ]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else report_path()
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        print(f"no abuse report at {path}: {exc}", file=sys.stderr)
        sys.exit(1)
    print(render(report))


if __name__ == "__main__":
    main()
