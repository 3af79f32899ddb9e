"""PNG charts of a run: one per case, our server beside the other two.

``python -m benchmarks.load.charts RESULTS.json OUT_DIR`` (needs matplotlib; the harness
runs it with its cache venv's Python). Prints the path of every PNG written.
Bars are medians; the whiskers span the repetitions' min and max.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

COLORS = {"ours": "#2a7ab9", "python-socketio": "#e3a21a", "node": "#5a9e4b"}


def chart_case(data: dict[str, Any], case: dict[str, Any], out: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    servers = case.get("servers") or data["meta"]["servers"]
    summary = data["summary"][case["name"]]["servers"]
    # Throughput or memory first, then up to two more metrics (latency, CPU per op).
    metrics = [m for m in case["metrics"] if m.get("primary")]
    metrics += [m for m in case["metrics"] if not m.get("primary") and "generator" not in m["key"]
                and "cpu_pct" not in m["key"]][:3]
    metrics = [m for m in metrics if any(m["key"] in summary[s]["metrics"] for s in servers)]
    if not metrics:
        return None
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        medians, lows, highs, colors = [], [], [], []
        for server in servers:
            entry = summary[server]["metrics"].get(metric["key"])
            med = entry["median"] if entry else 0.0
            medians.append(med)
            lows.append(med - entry["min"] if entry else 0.0)
            highs.append(entry["max"] - med if entry else 0.0)
            colors.append(COLORS.get(server, "#888888"))
        xs = range(len(servers))
        ax.bar(xs, medians, color=colors, yerr=[lows, highs], capsize=4)
        ax.set_xticks(list(xs))
        ax.set_xticklabels(servers, rotation=15, fontsize=8)
        arrow = "higher is better" if metric["better"] == "higher" else "lower is better"
        ax.set_title(f"{metric['label']} ({metric['unit']})\n{arrow}", fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
        for x, value in zip(xs, medians, strict=True):
            if value:
                ax.annotate(f"{value:,.3g}" if value < 1000 else f"{value:,.0f}", (x, value),
                            ha="center", va="bottom", fontsize=7, xytext=(0, 2),
                            textcoords="offset points")
    fig.suptitle(f"{case['title']}  (run {data['meta']['run_id']}, "
                 f"{data['meta']['reps']} reps)", fontsize=9)
    fig.tight_layout()
    path = out / f"{data['meta']['run_id']}-{case['name']}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    data = json.loads(Path(argv[0]).read_text())
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for case in data["cases"]:
        path = chart_case(data, case, out)
        if path is not None:
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
