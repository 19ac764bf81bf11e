"""Refresh calls over time, coordinated against uncoordinated, one row per backend (matplotlib).

Left: the refresh calls the fake answered, cumulative, from the grant
exchange on: solid, those that issued a token; dashed, those denied for
going over Zoho's limit of 10 in 10 minutes (a log scale above 10). A dotted
vertical line marks when a killed lease holder died. Right: CRM calls that
failed, per second, by when they failed.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

__all__ = ["plot"]

_STYLE = {
    "coordinated": {"color": "tab:blue"},
    "uncoordinated": {"color": "tab:red"},
    "killed-holder": {"color": "tab:green"},
    "killed-before-save": {"color": "tab:olive"},
}


def plot(timelines: list[dict[str, Any]], path: str) -> None:
    """Write the PNG of ``timelines`` (see ``bench.refresh.__main__._timeline``) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends = list(dict.fromkeys(t["backend"] for t in timelines))
    figure, axes = plt.subplots(
        len(backends), 2, figsize=(13, 3.4 * len(backends)), squeeze=False, sharex=True
    )
    for row, backend in enumerate(backends):
        refreshes, failures = axes[row]
        for timeline in (t for t in timelines if t["backend"] == backend):
            _draw(refreshes, failures, timeline)
        workers = next(t["workers"] for t in timelines if t["backend"] == backend)
        lifetime = next(t["lifetime"] for t in timelines if t["backend"] == backend)
        refreshes.set_title(
            f"{backend}: {workers} SDK processes, tokens live {lifetime:g} s", loc="left"
        )
        refreshes.set_ylabel("refresh calls (cumulative)")
        refreshes.set_yscale("symlog", linthresh=10)
        refreshes.set_ylim(bottom=0)
        refreshes.grid(alpha=0.3)
        refreshes.legend(loc="upper left", fontsize="small")
        failures.set_title(f"{backend}: failed CRM calls", loc="left")
        failures.set_ylabel("failed calls per second")
        failures.grid(alpha=0.3)
        failures.legend(loc="upper left", fontsize="small")
    for column in axes[-1]:
        column.set_xlabel("seconds since the grant exchange")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _draw(refreshes: Any, failures: Any, timeline: dict[str, Any]) -> None:
    scenario = timeline["scenario"]
    style = _STYLE.get(scenario, {})
    end = timeline["duration"]
    calls = [
        (at, outcome)
        for at, grant_type, outcome in timeline["grants"]
        if grant_type == "refresh_token"
    ]
    ok = [at for at, outcome in calls if outcome == "ok"]
    denied = [at for at, outcome in calls if outcome != "ok"]
    refreshes.step(
        [0.0, *ok, end],
        [*range(len(ok) + 1), len(ok)],
        where="post",
        label=f"{scenario}: {len(ok)} refreshed",
        **style,
    )
    if denied:
        refreshes.step(
            [0.0, *denied, max(end, denied[-1])],
            [*range(len(denied) + 1), len(denied)],
            where="post",
            linestyle="--",
            label=f"{scenario}: {len(denied)} denied",
            **style,
        )
    if timeline.get("kill_at") is not None:
        refreshes.axvline(timeline["kill_at"], linestyle=":", **style)

    per_second = Counter(int(at) for at, _ in timeline["failures"])
    seconds = list(range(int(end) + 1))
    failures.plot(
        seconds,
        [per_second[s] for s in seconds],
        label=f"{scenario}: {len(timeline['failures'])} failed",
        **style,
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.refresh.plot RUN.json OUT.png``: redraw from ``--json`` output."""
    import json
    import sys

    source, target = (argv if argv is not None else sys.argv[1:])[:2]
    with open(source, encoding="utf-8") as data:
        plot(json.load(data)["timelines"], target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
