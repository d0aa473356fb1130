"""k-fold cross-validation of one variant: how much the headline numbers depend on one split.

Each fold's model is trained on the other folds and scored on its own at native resolution,
meant for the train and validation images only, so the test split stays unseen.
"""

from __future__ import annotations

import pandas as pd

from wbcseg.card import make_card
from wbcseg.evaluate import evaluate_images
from wbcseg.metrics import METRICS
from wbcseg.preprocess import model_arrays
from wbcseg.scoring import dice_metrics, summarize
from wbcseg.segmenter import Segmenter
from wbcseg.split import kfold_assignments, stratified_split
from wbcseg.train import fit


def fit_and_evaluate(config, train_rows: pd.DataFrame, val_rows: pd.DataFrame, scored_rows: pd.DataFrame, inference: dict | None = None):
    """Train a model of `config` (a params.RunConfig) on `train_rows` (best epoch chosen on
    `val_rows`), then score it on `scored_rows` at native resolution with the Segmenter options
    `inference` (tta, postprocess, precision, engine), all in memory.
    Returns (per-image table, training history)."""
    arrays = {}
    for name, rows in (("train", train_rows), ("val", val_rows)):
        images, labels = model_arrays(rows, config.input_size, config.min_cell_diameter)
        arrays[name] = {"images": images, "labels": labels, "dataset": rows["dataset"].to_numpy()}
    model, history = fit(config, arrays["train"], arrays["val"])
    return evaluate_images(Segmenter(model, make_card(config), **(inference or {})), scored_rows), history


def cross_validate(
    config, samples: pd.DataFrame, folds: int, seed: int, val_fraction: float = 0.2, inference: dict | None = None, only: int | None = None
) -> pd.DataFrame:
    """k-fold cross-validation of one variant (`config`, a params.RunConfig) over `samples`.

    For each fold, a model is trained on the other folds, a stratified `val_fraction` of which
    chooses the best epoch, and the held-out fold is scored at native resolution. Meant for the
    train and validation images only, so the test split stays unseen. `inference` are the Segmenter
    options to score with (those of the evaluate stage). `only`: that fold alone, for one queued
    experiment per fold (the folds are the same in each). Returns the per-image table with a `fold` column.
    """
    samples = samples[samples["dataset"].isin(config.datasets)].reset_index(drop=True)
    assignment = kfold_assignments(samples, folds, seed)
    tables = []
    for fold in range(folds) if only is None else [only]:
        held_out = samples[assignment == fold].reset_index(drop=True)
        train_rows, val_rows = stratified_split(samples[assignment != fold], val_fraction, seed)
        per_image, _ = fit_and_evaluate(config, train_rows, val_rows, held_out, inference)
        tables.append(per_image.assign(fold=fold))
    return pd.concat(tables, ignore_index=True)


def crossval_summary(per_image: pd.DataFrame) -> pd.DataFrame:
    """Per dataset x target: the mean over folds of each fold's mean metric, and the spread (std,
    min, max) of those fold means, with the number of folds and of images."""
    per_fold = pd.concat(
        [summarize(rows).assign(fold=fold) for fold, rows in per_image.groupby("fold")], ignore_index=True
    )
    columns = [f"{metric}_mean" for metric in METRICS]
    groups = per_fold.groupby(["dataset", "target"], sort=False)
    stats = groups[columns].agg(["mean", "std", "min", "max"])
    stats.columns = [f"{metric.removesuffix('_mean')}_{stat}_over_folds" for metric, stat in stats.columns]
    stats["folds"] = groups.size()
    stats["n_images"] = groups["n_images"].sum()
    return stats.reset_index()


def crossval_metrics(summary: pd.DataFrame, folds: int) -> dict:
    """The study's DVC metrics: the number of folds, then, keyed like a model's (`scoring.dice_metrics`),
    the mean Dice over folds, and under 'sd' the standard deviation of the fold means."""
    return {"folds": folds, **dice_metrics(summary, "dice_mean_over_folds"), "sd": dice_metrics(summary, "dice_std_over_folds")}
