"""The study's figures: parameter importances and the optimization history, as PNGs.

Drawn with Optuna's matplotlib visualizations (matplotlib only). Importances need two
completed trials with differing params; with fewer the figure is skipped and said so.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from imgclf import fsutil

FIGURES = {"history": "plot_optimization_history", "importances": "plot_param_importances"}


def draw(study: Any, folder: Path) -> list[Path]:
    """Write ``folder/history.png`` and ``folder/importances.png``; the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    completed = [t for t in study.trials if t.state.name == "COMPLETE"]
    written = []
    for name, func in FIGURES.items():
        if name == "importances" and len(completed) < 2:
            print("tune: no importances plot yet: it needs 2 completed trials")
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # optuna marks these "experimental"
            try:
                ax = getattr(ovm, func)(study)
            except (ValueError, RuntimeError, ZeroDivisionError) as exc:
                print(f"tune: no {name} plot: {exc}")
                continue
        fig = ax.figure if hasattr(ax, "figure") else ax[0].figure
        fig.set_size_inches(8, 4.5)
        fig.tight_layout()
        path = folder / f"{name}.png"
        with fsutil.atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
        plt.close(fig)
        written.append(path)
    return written
