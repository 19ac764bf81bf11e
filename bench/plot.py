"""find_token latency against table size, one line per contender, log-log (matplotlib).

``python -m bench.plot RESULTS.json OUT.png`` plots a saved run;
``python -m bench --plot OUT.png`` plots the run it just made. One panel per
lookup (by user, refresh token, access token, and find_token_by_id); each
point is a median. Colour is the backend, line style the kind of store.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

__all__ = ["plot"]

_PANELS = ("find_user", "find_refresh", "find_access", "find_by_id")
_STYLE = {"floor": ":", "store": "-", "store+enc": "-.", "DBStore": "--", "FileStore": "-."}
_COLOUR = {"sqlite": "tab:blue", "postgresql": "tab:green", "mariadb": "tab:orange"}


def plot(results_json: str, out: Path) -> None:
    """Write the plot of a run (``report.to_json`` output) to ``out`` as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data: dict[str, Any] = json.loads(results_json)
    series: dict[str, dict[str, list[tuple[int, float, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    labels: dict[str, str] = {}
    for r in data["results"]:
        if r["operation"] in _PANELS:
            series[r["operation"]][r["contender"]].append((r["rows"], r["median_ns"], r["p99_ns"]))
            labels[r["operation"]] = r["label"]
    fig, axes = plt.subplots(2, 2, figsize=(12, 9), sharex=True, sharey=True)
    for ax, panel in zip(axes.flat, _PANELS):
        for contender, points in sorted(series[panel].items()):
            points.sort()
            family, _, backend = contender.partition("/")
            ax.plot(
                [p[0] for p in points],
                [p[1] / 1e3 for p in points],
                _STYLE.get(family, "-"),
                marker="o",
                color=_COLOUR.get(backend, "tab:red"),
                label=contender,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(labels.get(panel, panel))
        ax.grid(True, which="both", alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("rows in the table")
    for ax in axes[:, 0]:
        ax.set_ylabel("median latency, µs")
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=4, frameon=False)
    machine = data.get("machine", {})
    delay = data.get("settings", {}).get("proxy_delay_ms", 0)
    subtitle = f"{machine.get('CPU', '')}, {machine.get('cores (nproc)', '?')} cores"
    if delay:
        subtitle += f"; servers behind a proxy adding {delay:g} ms per chunk"
    fig.suptitle(f"Token lookup latency against table size\n{subtitle}")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(out, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m bench.plot RESULTS.json OUT.png")
    plot(Path(sys.argv[1]).read_text(), Path(sys.argv[2]))
