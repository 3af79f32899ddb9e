"""Markdown tables from a run's JSON: medians per server, and ours / competitor ratios."""

from __future__ import annotations

from typing import Any

ARROWS = {"higher": "↑", "lower": "↓"}


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    magnitude = abs(value)
    if magnitude >= 10_000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _labels(data: dict[str, Any]) -> dict[str, str]:
    return data["meta"].get("labels", {})


def _header(servers: list[str], first: str) -> list[str]:
    others = [s for s in servers if s != "ours"]
    cols = [first, *servers, *(f"ours / {s}" for s in others)] if "ours" in servers else [
        first, *servers]
    return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]


def _case_servers(data: dict[str, Any], case: dict[str, Any]) -> list[str]:
    return case.get("servers") or data["meta"]["servers"]


def case_table(data: dict[str, Any], case: dict[str, Any]) -> list[str]:
    servers = _case_servers(data, case)
    summary = data["summary"][case["name"]]
    lines = _header(servers, "metric")
    for metric in case["metrics"]:
        row = [f"{metric['label']} ({metric['unit']}) {ARROWS[metric['better']]}"]
        for server in servers:
            entry = summary["servers"][server]["metrics"].get(metric["key"])
            row.append(fmt(entry["median"]) if entry else "-")
        if "ours" in servers:
            for other in servers:
                if other != "ours":
                    row.append(_ratio(summary["ratio_ours_to"].get(other, {}).get(metric["key"])))
        lines.append("| " + " | ".join(row) + " |")
    return lines


def baseline_tables(data: dict[str, Any]) -> list[str]:
    """Per scenario whose cases compare with a baseline case (gateway-pm): our medians of
    every case side by side, then each case / the baseline."""
    out: list[str] = []
    scenarios: dict[str, list[dict[str, Any]]] = {}
    for case in data["cases"]:
        scenarios.setdefault(case["scenario"], []).append(case)
    for scenario, cases in scenarios.items():
        compared = [c for c in cases if c.get("baseline")]
        if not compared:
            continue
        names = [c["name"] for c in cases]
        prefix = scenario + "-"
        short = [n[len(prefix):] if n.startswith(prefix) else n for n in names]
        base = compared[0]["baseline"]
        base_short = base[len(prefix):] if base.startswith(prefix) else base
        cols = ["metric", *short, *(f"{s} / {base_short}" for s, c in zip(short, cases,
                                                                          strict=True)
                                    if c.get("baseline"))]
        out += [f"{scenario} (ours), each case beside `{base}`:", "",
                "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for metric in cases[0]["metrics"]:
            row = [f"{metric['label']} ({metric['unit']}) {ARROWS[metric['better']]}"]
            for case in cases:
                entry = data["summary"][case["name"]]["servers"].get("ours", {}).get(
                    "metrics", {}).get(metric["key"])
                row.append(fmt(entry["median"]) if entry else "-")
            for case in compared:
                ratio = data["summary"][case["name"]].get("ratio_to_baseline", {})
                row.append(_ratio(ratio.get(metric["key"])))
            out.append("| " + " | ".join(row) + " |")
        out.append("")
    return out


def primary_table(data: dict[str, Any]) -> list[str]:
    servers = data["meta"]["servers"]
    lines = _header(servers, "case: primary metric")
    for case in data["cases"]:
        summary = data["summary"][case["name"]]
        for metric in case["metrics"]:
            if not metric.get("primary"):
                continue
            row = [f"{case['name']}: {metric['label']} ({metric['unit']}) "
                   f"{ARROWS[metric['better']]}"]
            for server in servers:
                entry = summary["servers"].get(server, {}).get("metrics", {}).get(metric["key"])
                row.append(fmt(entry["median"]) if entry else "-")
            if "ours" in servers:
                for other in servers:
                    if other != "ours":
                        row.append(_ratio(
                            summary["ratio_ours_to"].get(other, {}).get(metric["key"])))
            lines.append("| " + " | ".join(row) + " |")
    return lines


def warnings(data: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for case in data["cases"]:
        for server, entry in data["summary"][case["name"]]["servers"].items():
            if entry["generator_saturated"]:
                out.append(f"- {case['name']} / {server}: the generator used more than 90% of "
                           "its core in at least one repetition; the number may be its limit")
            wanted = data["meta"]["reps"]
            if entry["ok_runs"] < wanted:
                out.append(f"- {case['name']} / {server}: {wanted - entry['ok_runs']} of "
                           f"{wanted} runs failed (see the JSON)")
    scenario_of = {case["name"]: case["scenario"] for case in data["cases"]}
    for run in data["runs"]:
        result = run["result"]
        where = f"- {run['case']} / {run['server']} rep {run['rep']}"
        if result.get("failed"):
            out.append(f"{where}: {result['failed']} connections failed: {result.get('errors')}")
        for key in ("refused", "duplicates", "lost_after_ack", "unanswered_after_drain"):
            if result.get(key):
                out.append(f"{where}: {key} = {result[key]}"
                           + (f" {result.get('refusals')}" if key == "refused" else ""))
        if run.get("redis_keys_deleted") == -1:
            out.append(f"{where}: its Redis keys could not be deleted")
        # In the throughput scenarios the server should own its core; below 90% it was
        # either pre-empted by other load on the machine or limited by something else.
        cpu = result.get("server_cpu_pct")
        if (scenario_of.get(run["case"]) in ("fanout", "fanout2", "echo", "gateway-pm")
                and cpu is not None and cpu < 90):
            out.append(f"{where}: the server used only {cpu:.0f}% of its core (other load on "
                       f"the machine? load average {run.get('loadavg_before')})")
    return out


def markdown_tables(data: dict[str, Any]) -> str:
    lines = ["", "Medians of the repetitions; ratios are ours / competitor from the same run.", ""]
    lines += primary_table(data)
    lines += ["", *baseline_tables(data)]
    for case in data["cases"]:
        lines += ["", f"{case['name']}: {case['title']}", ""]
        lines += case_table(data, case)
    warn = warnings(data)
    if warn:
        lines += ["", "Warnings:", *warn]
    return "\n".join(lines)


def markdown(data: dict[str, Any], charts: list[str]) -> str:
    meta = data["meta"]
    machine = meta["machine"]
    labels = _labels(data)
    dirty = " (engineio_core/socketio_core modified)" if machine["git_dirty"] else ""
    lines = [
        f"# Socket.IO load benchmarks: run {meta['run_id']}",
        "",
        f"Profile `{meta['profile']}`, {meta['reps']} repetition(s), started {meta['started']}, "
        f"took {meta.get('elapsed_s', 0) / 60:.1f} min. Every number is the median of the "
        "repetitions; a ratio is ours / competitor from the same run (↑: higher is better, "
        "↓: lower is better).",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory']} RAM, "
        f"Linux {machine['kernel']}. Server pinned to CPU {meta['server_cpu']} and load "
        f"generator to CPU {meta['generator_cpu']} (taskset: {machine['taskset']}). Load "
        f"average at start {meta['loadavg_start']}, at end {meta.get('loadavg_end')}. "
        f"Commit {machine['git_commit']}{dirty}; our server ran from a copy of "
        f"engineio_core/socketio_core (and realtime_app, the gateway cases') taken at the "
        f"start ({meta.get('ours_code', '?')}).",
        "",
        "Servers:",
        *(f"- `{name}`: {label}" for name, label in labels.items()),
        "",
        "Versions: " + "; ".join(f"{k}: {v}" for k, v in machine["versions"].items()),
        "",
        "## Summary",
        "",
        *primary_table(data),
        "",
        *baseline_tables(data),
    ]
    for case in data["cases"]:
        lines += ["", f"## {case['name']}", "", case["title"] + ".", ""]
        for note in case.get("notes", []):
            lines += [f"_{note}._", ""]
        lines += case_table(data, case)
        chart = f"{meta['run_id']}-{case['name']}.png"
        if chart in charts:
            lines += ["", f"![{case['name']}]({chart})"]
    warn = warnings(data)
    if warn:
        lines += ["", "## Warnings", "", *warn]
    lines += ["", "## Every run", "", "| case | server | rep | primary | generator CPU % | "
              "server CPU % | load avg before |", "|---|---|---|---|---|---|---|"]
    primary = {c["name"]: next(m for m in c["metrics"] if m.get("primary")) for c in data["cases"]}
    for run in data["runs"]:
        result = run["result"]
        metric = primary[run["case"]]
        if "error" in result:
            value = "error: " + str(result["error"]).splitlines()[0][:80]
        else:
            raw: Any = result
            for part in metric["key"].split("."):
                raw = raw.get(part) if isinstance(raw, dict) else None
            value = f"{fmt(raw * metric['scale'])} {metric['unit']}" if raw is not None else "-"
        lines.append(
            f"| {run['case']} | {run['server']} | {run['rep']} | {value} | "
            f"{fmt(result.get('generator_cpu_pct'))} | {fmt(result.get('server_cpu_pct'))} | "
            f"{run.get('loadavg_before', [None])[0] if run.get('loadavg_before') else '-'} |"
        )
    return "\n".join(lines) + "\n"
