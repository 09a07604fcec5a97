"""The bench's figures (matplotlib, Agg backend): ``profile.png`` and ``curves.png``.

* ``profile.png`` - the Dolan-Moré performance profile over all tasks and, when plane
  search takes part, over the SO-friendly tasks alone (where it applies); log tau axis.
* ``curves.png`` - per task, the mean validation metric of the test seeds against steps.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

__all__ = ["write_plots"]


def _style(spec: dict[str, Any], color: Any) -> dict[str, Any]:
    """One colour per optimizer in both figures; dashed Muon, dotted plane search, thick
    non-baselines (the optimizers under test)."""
    style: dict[str, Any] = {"color": color}
    if spec.get("matrix_class"):
        style["linestyle"] = "--"
    elif spec.get("kind") == "plane-search":
        style |= {"linestyle": ":", "linewidth": 2.0}
    elif not spec.get("baseline"):
        style["linewidth"] = 2.2
    return style


def write_plots(report: dict[str, Any], out: Path) -> list[Path]:
    """Write the two figures of ``report`` into ``out``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    specs = {s["label"]: s for s in report["optimizers"]}
    cmap = plt.get_cmap("tab10" if len(specs) <= 10 else "tab20")
    styles = {
        label: _style(spec, cmap(i % cmap.N)) for i, (label, spec) in enumerate(specs.items())
    }
    paths = []
    prof = report["profile"]
    panels = list(prof["curves"].items())
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5), squeeze=False)
    for ax, (name, curves) in zip(axes[0], panels, strict=True):
        n = len(prof["tasks"] if name == "all" else prof["so_friendly_tasks"])
        for label, rho in curves.items():
            ax.step(prof["taus"], rho, where="post", label=label, **styles[label])
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(ScalarFormatter())
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("tau (performance ratio to the best)")
        ax.set_ylabel("fraction of tasks within tau")
        ax.set_title(f"{'all tasks' if name == 'all' else 'SO-friendly tasks'} ({n})")
        ax.grid(alpha=0.3, which="both")
    axes[0][-1].legend(loc="lower right", fontsize="x-small")
    fig.tight_layout()
    paths.append(out / "profile.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    tasks = report["summary"]["tasks"]
    cols = min(3, max(1, len(tasks)))
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
    for ax, (task, entry) in zip(axes.flat, tasks.items(), strict=False):
        for label, row in entry["optimizers"].items():
            curve = row.get("curve") or {}
            if row.get("applies") and curve.get("steps"):
                ax.plot(curve["steps"], curve["mean"], label=label, **styles[label])
        ax.set_title(task)
        ax.set_xlabel("step")
        ax.set_ylabel(f"validation {entry['metric']}")
        if entry["metric"] != "accuracy":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    legend: dict[str, Any] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    handles, labels = list(legend.values()), list(legend)
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize="small")
    fig.tight_layout(rect=(0, 0.06 + 0.02 * (len(labels) // 6), 1, 1))
    paths.append(out / "curves.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths
