"""Overlays, galleries and plots with matplotlib.

Overlays are RGB uint8 arrays; plots are returned as Figures made through pyplot, so that a
notebook shows them inline, while a headless run (Agg) only builds them. Only `save_figure`
writes files.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from wbcseg.classes import CLASS_NAMES, target_masks, task_labels
from wbcseg.data import dataset_label, read_sample
from wbcseg.overlay import OVERLAY_COLOURS, overlay

#: Colours (RGB) of the error overlay; the legend of every error panel.
ERROR_COLOURS = {
    "true positive": (0, 200, 0),
    "false positive": (230, 0, 0),
    "false negative": (0, 80, 255),
}
ERROR_ALPHA = 0.5
#: Class map colours for plain masks: background black, cytoplasm grey, nucleus white, as in the PNGs.
MASK_CMAP = ListedColormap(["black", "grey", "white"])


def error_overlay(image: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """The image with true positives, false positives and false negatives of a boolean prediction
    tinted in ERROR_COLOURS (true negatives untouched)."""
    truth, pred = np.asarray(truth, bool), np.asarray(pred, bool)
    out = np.asarray(image, dtype=np.float32).copy()
    for region, colour in zip((truth & pred, pred & ~truth, truth & ~pred), ERROR_COLOURS.values()):
        out[region] = (1 - ERROR_ALPHA) * out[region] + ERROR_ALPHA * np.asarray(colour, np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def legend_handles(colours: dict[str, tuple[int, int, int]]) -> list[Patch]:
    """Legend patches for a name -> RGB mapping such as ERROR_COLOURS."""
    return [Patch(color=np.asarray(rgb) / 255, label=name) for name, rgb in colours.items()]


def overlay_gallery(rows: list[dict], task: str = "tissue", title: str | None = None) -> plt.Figure:
    """One row of panels per sample, in the order given (worst first is the caller's choice):
    image | truth | prediction | whole-cell errors, titled with sample id and Dice.

    Each row is a dict with sample_id, image (RGB), truth (class map 0/1/2), labels (prediction in
    the task's label space) and dice.
    """
    fig, axes = plt.subplots(len(rows), 4, figsize=(10, 2.6 * len(rows)), squeeze=False)
    for ax_row, row in zip(axes, rows):
        truth = task_labels(row["truth"], task)
        panels = (
            (row["image"], f"{row['sample_id']}"),
            (overlay(row["image"], truth, task), "truth"),
            (overlay(row["image"], row["labels"], task), "prediction"),
            (error_overlay(row["image"], row["truth"] > 0, target_masks(row["labels"], task)["cell"]),
             f"cell Dice {row['dice']:.3f}"),
        )
        for ax, (picture, label) in zip(ax_row, panels):
            ax.imshow(picture)
            ax.set_title(label, fontsize=9)
            ax.axis("off")
    fig.legend(handles=legend_handles(ERROR_COLOURS), loc="lower center", ncol=3, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    # leave room for the legend below and the title above the panels
    fig.tight_layout(rect=(0, 0.03, 1, 0.97 if title else 1))
    return fig


def sample_grid(samples: pd.DataFrame, n_per_dataset: int = 4, seed: int = 0) -> plt.Figure:
    """Images over their masks, `n_per_dataset` drawn at random (seeded) from each dataset."""
    chosen = (
        samples.groupby("dataset", sort=True)
        .sample(frac=1, random_state=seed)
        .groupby("dataset", sort=True)
        .head(n_per_dataset)
    )
    datasets = sorted(chosen["dataset"].unique(), key=str)  # 1, 2, then lab datasets by name
    fig, axes = plt.subplots(2 * len(datasets), n_per_dataset, figsize=(2.2 * n_per_dataset, 4.4 * len(datasets)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for d, dataset in enumerate(datasets):
        for i, (_, row) in enumerate(chosen[chosen["dataset"] == dataset].iterrows()):
            image, class_map = read_sample(row)
            axes[2 * d, i].imshow(image)
            axes[2 * d, i].set_title(f"{row['sample_id']} ({row.get('cell_type_name', row['cell_type'])})", fontsize=8)
            axes[2 * d + 1, i].imshow(class_map, cmap=MASK_CMAP, vmin=0, vmax=len(CLASS_NAMES) - 1, interpolation="nearest")
    fig.suptitle("Images and masks (black background, grey cytoplasm, white nucleus)")
    fig.tight_layout()
    return fig


def training_curves(history: pd.DataFrame) -> plt.Figure:
    """Loss and Dice per epoch, training and validation (columns loss, val_loss, dice, val_dice;
    any of them may be missing). The x axis is an 'epoch' or 'step' column, else the index."""
    x_column = next((c for c in ("epoch", "step") if c in history.columns), None)
    x = history[x_column] if x_column else history.index
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, metric in zip(axes, ("loss", "dice")):
        for column, label in ((metric, "train"), (f"val_{metric}", "validation")):
            if column in history.columns:
                ax.plot(x, history[column], marker=".", label=label)
        ax.set_xlabel(x_column or history.index.name or "epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def metric_boxplots(per_image: pd.DataFrame, metrics=("dice", "hd95")) -> plt.Figure:
    """Per-image distributions of each metric for every target x dataset: a box with each image
    drawn as a point over it. NaN values (HD95 of an empty mask) are left out."""
    groups = list(per_image.groupby(["target", "dataset"], sort=False))
    fig, axes = plt.subplots(1, len(metrics), figsize=(max(4, 0.8 * len(groups)) * len(metrics), 4), squeeze=False)
    rng = np.random.default_rng(0)  # fixed jitter: the same table draws the same figure
    labels = [f"{target}\n{dataset_label(dataset)}" for (target, dataset), _ in groups]
    for ax, metric in zip(axes[0], metrics):
        values = [group[metric].dropna().to_numpy() for _, group in groups]
        ax.boxplot(values, showfliers=False)
        for i, v in enumerate(values, start=1):
            ax.scatter(i + rng.uniform(-0.15, 0.15, len(v)), v, s=8, alpha=0.5)
        ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=8)
        ax.set_ylabel(f"{metric} (pixels)" if metric == "hd95" else metric)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def paired_dice(before: pd.DataFrame, after: pd.DataFrame, names: tuple[str, str] = ("before", "after")) -> plt.Figure:
    """Per-image Dice of two models on the same images (two `scoring.evaluate_labels` tables), one
    panel per target: a point per image, above the diagonal where the second model does better."""
    merged = before.merge(after, on=["sample_id", "target"], suffixes=("_before", "_after"))
    targets = list(dict.fromkeys(merged["target"]))
    fig, axes = plt.subplots(1, len(targets), figsize=(3.6 * len(targets), 3.6), squeeze=False)
    for ax, target in zip(axes[0], targets):
        rows = merged[merged["target"] == target]
        ax.scatter(rows["dice_before"], rows["dice_after"], s=12, alpha=0.6)
        low = float(np.nanmin([rows["dice_before"].min(), rows["dice_after"].min(), 0.9]))
        ax.plot([low, 1], [low, 1], color="grey", linewidth=1)
        ax.set(title=target, xlabel=f"Dice, {names[0]}", ylabel=f"Dice, {names[1]}", xlim=(low, 1.005), ylim=(low, 1.005))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def size_histogram(stats: pd.DataFrame) -> plt.Figure:
    """Histogram of image heights and widths per dataset (`data.image_stats`)."""
    sides = stats[["height", "width"]].to_numpy()
    # Shared bins a few pixels wide: each dataset has one or a few sizes, which per-dataset
    # automatic bins would draw as invisible zero-width bars.
    bins = np.linspace(sides.min() - 5, sides.max() + 5, 40)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3), sharey=True)
    for ax, side in zip(axes, ("height", "width")):
        for dataset, group in stats.groupby("dataset"):
            ax.hist(group[side], bins=bins, alpha=0.6, label=f"Dataset {dataset}")
        ax.set_xlabel(f"{side} (pixels)")
        ax.legend()
    axes[0].set_ylabel("images")
    fig.tight_layout()
    return fig


def class_fraction_bars(stats: pd.DataFrame) -> plt.Figure:
    """Mean fraction of pixels of each class per dataset, stacked (`data.image_stats`)."""
    fractions = stats.groupby("dataset")[[f"frac_{name}" for name in CLASS_NAMES]].mean()
    fractions.columns = list(CLASS_NAMES)
    fractions.index = [f"Dataset {d}" for d in fractions.index]
    # Background light grey; cytoplasm and nucleus in the colours of the prediction overlays.
    colours = [(0.85, 0.85, 0.85)] + [np.asarray(rgb) / 255 for rgb in OVERLAY_COLOURS["tissue"][1:]]
    ax = fractions.plot.barh(stacked=True, figsize=(7, 0.8 + 0.6 * len(fractions)), color=colours)
    ax.set_xlabel("fraction of pixels")
    ax.legend(loc="center left", bbox_to_anchor=(1, 0.5))
    ax.figure.tight_layout()
    return ax.figure


def dice_comparison(table: pd.DataFrame) -> plt.Figure:
    """Mean Dice ± standard deviation over the test images, one panel per test dataset, a group of
    bars per target and a bar per model tested there (`report.comparison_table`; pooled rows left out)."""
    rows = table[table["dataset"] != "all"]
    datasets, models = sorted(rows["dataset"].unique()), list(dict.fromkeys(rows["model"]))
    targets = list(dict.fromkeys(rows["target"]))
    colours = dict(zip(models, plt.get_cmap("tab10").colors))
    width = 0.8 / len(models)
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.8), sharey=True, squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        here = rows[rows["dataset"] == dataset].set_index(["model", "target"])
        for m, model in enumerate(models):
            keys = [(model, target) for target in targets if (model, target) in here.index]
            if keys:
                x = [targets.index(target) + (m - (len(models) - 1) / 2) * width for _, target in keys]
                ax.bar(x, here.loc[keys, "dice_mean"], width, yerr=here.loc[keys, "dice_std"].fillna(0), capsize=2,
                       color=colours[model], label=model)
        ax.set_xticks(range(len(targets)), targets)
        ax.set_title(f"tested on {dataset}")
        ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].set_ylabel("Dice (mean ± sd over images)")
    handles = [Patch(color=colours[model], label=model) for model in models]
    fig.legend(handles=handles, loc="lower center", ncol=len(models), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))  # room for the legend below
    return fig


def quality_targets_chart(targets: pd.DataFrame) -> plt.Figure:
    """Each quality target (a tick) beside the Dice reached (a dot, green when met, red when short),
    with the gap written next to it (`report.quality_targets_table`)."""
    labels = [f"{m} {d} {t} ({r})" for m, d, t, r in zip(targets["model"], targets["dataset"], targets["target"], targets["requirement"])]
    y = np.arange(len(targets))[::-1]
    fig, ax = plt.subplots(figsize=(6.5, 0.5 + 0.45 * len(targets)))
    ax.scatter(targets["required"], y, marker="|", s=300, color="black", label="target", zorder=3)
    met = targets["met"].to_numpy(bool)
    ax.scatter(targets["reached"], y, c=np.where(met, "tab:green", "tab:red"), s=40, label="reached", zorder=4)
    for yi, reached, gap in zip(y, targets["reached"], targets["gap"]):
        if pd.notna(reached):
            ax.annotate(f"{gap:+.3f}", (reached, yi), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
    values = pd.concat([targets["required"], targets["reached"]]).dropna()
    span = max(float(values.max() - values.min()), 0.01)
    ax.set_xlim(values.min() - 0.15 * span, values.max() + 0.15 * span)
    ax.set_ylim(-0.7, len(targets) - 0.3)
    ax.set_yticks(y, labels)
    ax.set_xlabel("mean Dice on the test images")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def confusion_figure(confusion: pd.DataFrame) -> plt.Figure:
    """Pixel confusion (`scoring.pixel_confusion`): each true class's pixels shared among the predicted
    classes (rows sum to 1), with the share written in each cell."""
    shares = confusion.div(confusion.sum(axis=1).replace(0, np.nan), axis=0).fillna(0)
    n = len(shares)
    fig, ax = plt.subplots(figsize=(1.3 * n + 1.8, 1.1 * n + 1))
    image = ax.imshow(shares.to_numpy(), cmap="Blues", vmin=0, vmax=1)
    for (i, j), share in np.ndenumerate(shares.to_numpy()):
        ax.text(j, i, f"{share:.3f}", ha="center", va="center", color="white" if share > 0.6 else "black", fontsize=9)
    ax.set_xticks(range(n), shares.columns)
    ax.set_yticks(range(n), shares.index)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class's pixels")
    fig.tight_layout()
    return fig


def save_figure(fig: plt.Figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Write `fig` to `path` (its folder created), cropped to its content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path
