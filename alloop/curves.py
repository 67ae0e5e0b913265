"""Learning curves: mean ± std over seeds, area under the curve, labels to reach a target, the plot.

Read by `alloop simulate`, the label-efficiency benchmarks and the report's random baseline.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from alloop import atomic

log = logging.getLogger("alloop")


def slice_summary(slices: pd.DataFrame) -> pd.DataFrame:
    """Per method, slice and labeled round: mean share of labeled images and boxes, and test mAP@0.5."""
    if slices.empty:
        return slices
    df = slices.copy()
    totals = df.groupby(["method", "seed", "round"])[["labeled", "labeled_boxes"]].transform("sum")
    df["labeled_share"] = df["labeled"] / totals["labeled"].where(totals["labeled"] > 0)
    df["boxes_per_image"] = df["labeled_boxes"] / df["labeled"].where(df["labeled"] > 0)
    g = df.groupby(["method", "round", "slice"])
    return g.agg(labeled_share=("labeled_share", "mean"), map50=("map50", "mean"),
                 map50_std=("map50", "std"), seeds=("seed", "nunique")).reset_index()


def mean_curves(curves: pd.DataFrame, metric: str = "map50", x: str = "n_labeled") -> pd.DataFrame:
    """Per method and labeled count: mean and std of ``metric`` over seeds.

    ``x="n_boxes"`` (labeled boxes, which differ per seed): per method and round, with ``x`` the
    mean over seeds as well.
    """
    if x == "n_labeled":
        g = curves.groupby(["method", "n_labeled"])[metric]
        return g.agg(["mean", "std", "count"]).reset_index().fillna({"std": 0.0})
    g = curves.groupby(["method", "round"])
    return g.agg(mean=(metric, "mean"), std=(metric, "std"), count=(metric, "count"),
                 **{x: (x, "mean")}).reset_index().fillna({"std": 0.0})


def area_under_curve(n: np.ndarray, y: np.ndarray) -> float:
    """Trapezoidal area under y(n), divided by the n range: the mean mAP over the budget."""
    if len(n) < 2:
        return float(y[0]) if len(y) else float("nan")
    return float(np.trapezoid(y, n) / (n[-1] - n[0]))


def labels_to_reach(n: np.ndarray, y: np.ndarray, target: float) -> float:
    """Smallest labeled count where the (linearly interpolated) curve first reaches ``target``; inf if never."""
    for i in range(len(n)):
        if y[i] >= target:
            if i == 0:
                return float(n[0])
            # Interpolate between the last point below and this one.
            frac = (target - y[i - 1]) / (y[i] - y[i - 1])
            return float(n[i - 1] + frac * (n[i] - n[i - 1]))
    return float("inf")


def summarise(curves: pd.DataFrame, metric: str = "map50", x: str = "n_labeled") -> pd.DataFrame:
    """Per method: final mAP, AUC (mean ± std over seeds), labels needed to reach random's final mAP.

    ``x="n_boxes"`` counts the cost in labeled boxes instead of images: the AUC is over boxes and
    ``labels_to_reach_random_final`` / ``share_of_random_labels`` are in boxes (``unit`` says which).
    """
    out = []
    means = mean_curves(curves, metric, x)
    random_target = random_n = None
    if "random" in set(curves["method"]):
        r = means[means.method == "random"].sort_values(x)
        random_target, random_n = float(r["mean"].iloc[-1]), float(r[x].iloc[-1])
    for method, grp in curves.groupby("method"):
        aucs = [area_under_curve(s.sort_values(x)[x].to_numpy(float), s.sort_values(x)[metric].to_numpy(float))
                for _, s in grp.groupby("seed")]
        m = means[means.method == method].sort_values(x)
        n, y = m[x].to_numpy(float), m["mean"].to_numpy(float)
        need = labels_to_reach(n, y, random_target) if random_target is not None else float("nan")
        out.append({
            "method": method,
            "seeds": grp["seed"].nunique(),
            f"final_{metric}": float(y[-1]),
            f"final_{metric}_std": float(m["std"].iloc[-1]),
            "auc": float(np.mean(aucs)),
            "auc_std": float(np.std(aucs, ddof=1)) if len(aucs) > 1 else 0.0,
            "labels_to_reach_random_final": need,
            "share_of_random_labels": need / random_n if random_n else float("nan"),
            "unit": "images" if x == "n_labeled" else "boxes",
        })
    return pd.DataFrame(out)


def plot_curves(curves: pd.DataFrame, path: Path, metric: str = "map50", x: str = "n_labeled") -> Path | None:
    """mAP vs labeled images (or ``x="n_boxes"``: labeled boxes), mean ± std over seeds, one line per method."""
    if curves.empty:
        return None
    try:
        import matplotlib
    except ImportError:  # the figures are optional; the CSVs carry the same numbers
        log.warning("matplotlib is not installed: no learning-curve plot")
        return None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    means = mean_curves(curves, metric, x)  # boxes differ per seed: both axes averaged per round
    for method, m in means.groupby("method"):
        m = m.sort_values(x)
        ax.plot(m[x], m["mean"], marker="o", label=method)
        ax.fill_between(m[x], m["mean"] - m["std"], m["mean"] + m["std"], alpha=0.2)
    ax.set_xlabel("labeled images" if x == "n_labeled" else "labeled boxes (mean over seeds)")
    ax.set_ylabel("test mAP@0.5" if metric == "map50" else "test mAP@[.5:.95]")
    ax.set_title(f"label efficiency ({curves['seed'].nunique()} seeds, mean ± std)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic.write_bytes(path, buf.getvalue())
    return path


# -- plumbing -------------------------------------------------------------------------------
