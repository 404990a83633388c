"""The PNG chart: one horizontal bar panel per charted figure, fdloop bars highlighted.

Needs matplotlib (``pip install 'fdloop[plot]'``); :func:`available` says whether it is
there so the caller can print the hint instead.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from .runner import WorkloadResult

INSTALL_HINT = "pip install 'fdloop[plot]'"


def available() -> bool:
    """True when matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def draw(results: list[WorkloadResult], path: Path, caption: str) -> bool:
    """Write the chart to ``path``; False when there is nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for result in results:
        columns = {c.key: c for c in result.spec.columns}
        ok = {
            n: o.median for n, o in result.outcomes.items()
            if o.status == "ok" and not result.contenders[n].baseline
        }
        for key in result.spec.plot:
            # A saved run from before a column existed has no bars for it: no panel.
            if key in columns and any(key in median for median in ok.values()):
                panels.append((result.spec.name, columns[key], ok))
    if not panels:
        return False
    height = sum(0.6 + 0.28 * len(ok) for _n, _c, ok in panels) + 0.6
    figure, axes = plt.subplots(len(panels), 1, figsize=(9, height), squeeze=False)
    for axis, (workload, column, medians) in zip(axes[:, 0], panels, strict=True):
        names = list(medians)
        names = [name for name in names if column.key in medians[name]]
        values = [medians[name][column.key] for name in names]
        colours = ["tab:orange" if name.startswith("fdloop") else "tab:blue" for name in names]
        axis.barh(names, values, color=colours)
        axis.invert_yaxis()
        # Log scale when bars of whole units differ 100-fold (a drifting sleep loop next
        # to 1 ms of lateness, 1,001 threads next to 1). "symlog" is linear within ±1,
        # so a negative bar (a timer firing early) and a near-zero one still show.
        whole = [value for value in values if value >= 1]
        if whole and max(whole) > 100 * min(whole):
            axis.set_xscale("symlog", linthresh=1)
        hints = {"higher": " (higher is better)", "lower": " (lower is better)"}
        hint = hints.get(column.better, "")
        scale = " (log scale)" if axis.get_xscale() == "symlog" else ""
        axis.set_title(f"{workload}: {column.label}{hint}{scale}", fontsize=10, loc="left")
        axis.tick_params(labelsize=8)
        for y, value in enumerate(values):
            axis.text(value, y, f" {value:,.{column.digits}f}", va="center", fontsize=7)
    # The caption hangs from 0.1 in below the top edge and the panels start under it:
    # the figure is tens of inches tall, so a fraction of its height would not do.
    caption_lines = textwrap.fill(caption, 140)
    caption_inches = 0.1 + 0.13 * (caption_lines.count("\n") + 1)
    figure.suptitle(caption_lines, fontsize=7, y=1 - 0.1 / height, va="top")
    figure.tight_layout(rect=(0, 0, 1, 1 - caption_inches / height))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
