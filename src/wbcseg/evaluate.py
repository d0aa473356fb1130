"""Honest evaluation: predictions at native resolution scored per image and per target, as tables.

Targets are the regions a pathologist reads: `cell` (the whole WBC, cytoplasm and nucleus
together), `nucleus` and `cytoplasm`. A binary model is scored on `cell` only.

Edge cases of `segmentation_metrics` (a target absent from the truth, the prediction, or both):

- both empty: the prediction is right, so dice = iou = precision = recall = 1 and hd95 = 0;
- exactly one empty: dice = iou = precision = recall = 0 (sklearn's zero_division=0 convention,
  so a missed or invented region lowers every mean) and hd95 = NaN, because there is no boundary
  to measure a distance to. Means of hd95 skip NaNs; `summarize` counts them in `hd95_nan`.

HD95 is the 95th percentile of the pooled distances, in pixels, from each boundary pixel of one
mask to the nearest boundary pixel of the other, in both directions (medpy's `hd95`). The image
border counts as background, so a region cut by the border has a boundary along it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from wbcseg.data import TASK_CLASSES, read_image, read_mask

#: Targets scored for each task, in report order.
TASK_TARGETS = {"binary": ("cell",), "tissue": ("cell", "nucleus", "cytoplasm")}
METRICS = ("dice", "iou", "precision", "recall", "pixel_accuracy", "hd95")
PER_IMAGE_COLUMNS = ("sample_id", "dataset", "cell_type", "target", *METRICS, "height", "width")
ALL_DATASETS = "all"

#: Quality targets of the issue: native-resolution Dice on the held-out test split of the default
#: tissue model trained on both datasets.
QUALITY_TARGETS = pd.DataFrame(
    [
        {"dataset": "d1", "target": "cell", "metric": "dice", "required": 0.985},
        {"dataset": "d1", "target": "nucleus", "metric": "dice", "required": 0.97},
        {"dataset": "d2", "target": "cell", "metric": "dice", "required": 0.98},
        {"dataset": "d2", "target": "nucleus", "metric": "dice", "required": 0.982},
    ]
)

#: Published figures, QUOTED from their sources and not reproduced here; their protocols differ
#: from ours (other splits, other resolutions), so they are context, not a leaderboard.
PUBLISHED = pd.DataFrame(
    [
        {
            "source": "Haider et al., IEEE JBHI 2022 (LDS-Net / LDAS-Net)",
            "dataset": "d1", "task": "tissue", "target": "nucleus", "metric": "dice", "value": 0.9635,
            "protocol": "quoted: as published, their own split",
        },
        {
            "source": "Haider et al., IEEE JBHI 2022 (LDS-Net / LDAS-Net)",
            "dataset": "d2", "task": "tissue", "target": "nucleus", "metric": "dice", "value": 0.9809,
            "protocol": "quoted: as published, their own split",
        },
        {
            "source": "zarif101/blood_cell_segmentation_unet ('White Blood Cell Segmentation with Keras using Unet')",
            "dataset": "d1", "task": "binary", "target": "cell", "metric": "pixel_accuracy", "value": 0.98,
            "protocol": "quoted: claimed on its own training data, not held-out",
        },
    ]
)


# --------------------------------------------------------------------------- masks


def _check_task(task: str) -> None:
    if task not in TASK_TARGETS:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(TASK_CLASSES)}")


def target_masks(labels: np.ndarray, task: str) -> dict[str, np.ndarray]:
    """Boolean masks of each target from predicted labels in the task's label space
    (binary: 0 rest / 1 cell; tissue: 0 background / 1 cytoplasm / 2 nucleus)."""
    _check_task(task)
    labels = np.asarray(labels)
    if task == "binary":
        return {"cell": labels == 1}
    return {"cell": labels > 0, "nucleus": labels == 2, "cytoplasm": labels == 1}


def truth_masks(class_map: np.ndarray, task: str) -> dict[str, np.ndarray]:
    """Boolean masks of each target of `task` from a 3-class ground-truth class map."""
    _check_task(task)
    class_map = np.asarray(class_map)
    masks = target_masks(class_map, "tissue")
    return {target: masks[target] for target in TASK_TARGETS[task]}


# --------------------------------------------------------------------------- metrics


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of `mask` with a 4-neighbour outside it (the image border counts as outside)."""
    return mask & ~ndimage.binary_erosion(mask, ndimage.generate_binary_structure(2, 1), border_value=0)


def hd95(pred: np.ndarray, truth: np.ndarray) -> float:
    """95th percentile symmetric Hausdorff distance (pixels) between the boundaries of two
    non-empty masks; NaN when either is empty."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    if not pred.any() or not truth.any():
        return float("nan")
    pred_edge, truth_edge = _boundary(pred), _boundary(truth)
    # The distance transform of the complement of a boundary is, at every pixel, the distance to
    # the nearest boundary pixel: one pass per direction instead of a pairwise loop.
    to_truth = ndimage.distance_transform_edt(~truth_edge)[pred_edge]
    to_pred = ndimage.distance_transform_edt(~pred_edge)[truth_edge]
    return float(np.percentile(np.concatenate([to_truth, to_pred]), 95))


def segmentation_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Dice, IoU, precision, recall, pixel accuracy and HD95 of a boolean prediction against a
    boolean truth of the same shape (edge cases in the module docstring)."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction is {pred.shape} but truth is {truth.shape}; score them at the same resolution")
    tp = int(np.count_nonzero(pred & truth))
    fp = int(np.count_nonzero(pred & ~truth))
    fn = int(np.count_nonzero(~pred & truth))
    accuracy = 1.0 - (fp + fn) / pred.size
    if tp + fp + fn == 0:
        return {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0, "pixel_accuracy": accuracy, "hd95": 0.0}
    return {
        "dice": 2 * tp / (2 * tp + fp + fn),
        "iou": tp / (tp + fp + fn),
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "pixel_accuracy": accuracy,
        "hd95": hd95(pred, truth),
    }


# --------------------------------------------------------------------------- per image


def evaluate_labels(pred_labels, samples: pd.DataFrame, task: str) -> pd.DataFrame:
    """Per-image, per-target metrics (long format, PER_IMAGE_COLUMNS) of predicted label maps
    (task label space, native resolution, in `samples` order) against the samples' masks."""
    _check_task(task)
    pred_labels = list(pred_labels)
    if len(pred_labels) != len(samples):
        raise ValueError(f"{len(pred_labels)} predictions for {len(samples)} samples")
    rows = []
    for labels, (_, row) in zip(pred_labels, samples.iterrows()):
        truth = truth_masks(read_mask(row["mask"]), task)
        if labels.shape != truth["cell"].shape:
            raise ValueError(
                f"{row['sample_id']}: prediction is {labels.shape} but its mask is {truth['cell'].shape}; "
                "predictions must be at the image's native resolution"
            )
        pred = target_masks(labels, task)
        for target in TASK_TARGETS[task]:
            rows.append(
                {
                    "sample_id": row["sample_id"],
                    "dataset": row["dataset"],
                    "cell_type": row["cell_type"],
                    "target": target,
                    **segmentation_metrics(pred[target], truth[target]),
                    "height": labels.shape[0],
                    "width": labels.shape[1],
                }
            )
    return pd.DataFrame(rows, columns=list(PER_IMAGE_COLUMNS))


def read_images(samples: pd.DataFrame) -> list[np.ndarray]:
    """The samples' images (RGB uint8, native resolution), in order."""
    return [read_image(path) for path in samples["image"]]


def evaluate_images(segmenter, samples: pd.DataFrame, batch_size: int = 16) -> pd.DataFrame:
    """Per-image, per-target metrics of a `predict.Segmenter` (anything with `task` and
    `segment_many`) on `samples`, predicted and scored at native resolution."""
    results = segmenter.segment_many(read_images(samples), batch_size=batch_size)
    return evaluate_labels((result.labels for result in results), samples, segmenter.task)


# --------------------------------------------------------------------------- summaries


def dataset_label(dataset) -> str:
    """'d1', 'd2' for dataset numbers; ALL_DATASETS stays as it is."""
    return dataset if dataset == ALL_DATASETS else f"d{dataset}"


def summarize(per_image: pd.DataFrame) -> pd.DataFrame:
    """Mean and std (ddof=1) of each metric per dataset x target, with the number of images and of
    NaN HD95 values (skipped by the mean); dataset is 'd1', 'd2', ... and 'all' for every image."""
    labelled = per_image.assign(dataset=per_image["dataset"].map(dataset_label))
    pooled = pd.concat([labelled, labelled.assign(dataset=ALL_DATASETS)], ignore_index=True)
    groups = pooled.groupby(["dataset", "target"], sort=False)
    stats = groups[list(METRICS)].agg(["mean", "std"])
    stats.columns = [f"{metric}_{stat}" for metric, stat in stats.columns]
    stats["n_images"] = groups.size()
    stats["hd95_nan"] = groups["hd95"].agg(lambda values: int(values.isna().sum()))
    return stats.reset_index()


def _json_number(value):
    return None if pd.isna(value) else round(float(value), 4)


def headline_metrics(summary: pd.DataFrame, protocol: str) -> dict:
    """A JSON-ready {protocol, <dataset>: {<target>: {metric: mean, ..., n_images, hd95_nan}}} for
    DVC metrics; NaN becomes null."""
    out: dict = {"protocol": protocol}
    for row in summary.itertuples(index=False):
        entry = {metric: _json_number(getattr(row, f"{metric}_mean")) for metric in METRICS}
        entry["n_images"] = int(row.n_images)
        entry["hd95_nan"] = int(row.hd95_nan)
        out.setdefault(row.dataset, {})[row.target] = entry
    return out


def comparison_metrics(summaries: dict[str, pd.DataFrame], protocol: str, metrics=("dice", "iou", "hd95")) -> dict:
    """The headline of every model, compact enough to read in `dvc metrics show`:
    {protocol, <model>: {<dataset>: {<target>: {dice, iou, hd95}}}}, per dataset only (no 'all')."""
    out: dict = {"protocol": protocol}
    for name, summary in summaries.items():
        for row in summary[summary["dataset"] != ALL_DATASETS].itertuples(index=False):
            out.setdefault(name, {}).setdefault(row.dataset, {})[row.target] = {
                metric: _json_number(getattr(row, f"{metric}_mean")) for metric in metrics
            }
    return out


def datasets_label(datasets) -> str:
    """'d1+d2' for datasets (1, 2)."""
    return "+".join(dataset_label(d) for d in datasets)


def comparison_table(summaries: dict[str, pd.DataFrame], configs: dict) -> pd.DataFrame:
    """One row per model x dataset x target with mean Dice, IoU and HD95, beside what the model
    was trained on and tested on ('d1', 'd1+d2'). `configs` maps model names to params.RunConfig;
    a summary without a config (the classical baseline) is taken to be tuned on the train split
    and tested on the test split of the datasets it was summarised over. An 'all' row is kept only
    where a model was tested on more than one dataset."""
    tables = []
    for name, summary in summaries.items():
        per_dataset = summary[summary["dataset"] != ALL_DATASETS]
        tested = sorted(int(label[1:]) for label in per_dataset["dataset"].unique())
        config = configs.get(name)
        rows = summary if len(tested) > 1 else per_dataset
        tables.append(
            rows.assign(
                model=name,
                task=config.task if config else ("tissue" if "nucleus" in set(summary["target"]) else "binary"),
                trained_on=datasets_label(config.datasets if config else tested),
                tested_on=datasets_label(config.test_datasets if config else tested),
            )
        )
    columns = ["model", "task", "trained_on", "tested_on", "dataset", "target",
               "dice_mean", "dice_std", "iou_mean", "hd95_mean", "n_images"]
    return pd.concat(tables, ignore_index=True)[columns]


def quality_targets_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The issue's quality targets beside the reached mean value: met (bool) and gap
    (reached - required; negative means short of the target, NaN when not evaluated)."""
    reached = summary.set_index(["dataset", "target"])
    table = QUALITY_TARGETS.copy()
    table["reached"] = [
        reached[f"{metric}_mean"].get((dataset, target), np.nan)
        for dataset, target, metric in table[["dataset", "target", "metric"]].itertuples(index=False)
    ]
    table["gap"] = table["reached"] - table["required"]
    table["met"] = table["gap"] >= 0
    return table


# --------------------------------------------------------------------------- inference options

DEFAULT_OPTIONS = (
    {"tta": False, "postprocess": False},
    {"tta": False, "postprocess": True},
    {"tta": True, "postprocess": False},
    {"tta": True, "postprocess": True},
)


def compare_inference_options(
    model, card: dict, samples: pd.DataFrame, options=DEFAULT_OPTIONS, runs=(("tensorflow", "float32"),), batch_size: int = 16
) -> pd.DataFrame:
    """Mean Dice per target (columns) for each run x inference option x dataset (rows), on
    `samples` (meant for the validation split: choosing options on the test split would leak it).
    `runs` are (engine, precision) pairs as `predict.Segmenter` takes them ('auto' is resolved).

    The network runs once per run and TTA setting; post-processing is applied to those same
    predictions with `postprocess.keep_central_cell`, as `predict.Segmenter` does, instead of
    predicting again.
    """
    from wbcseg.engine import resolve_engine
    from wbcseg.model import resolve_precision
    from wbcseg.postprocess import keep_central_cell
    from wbcseg.predict import Segmenter  # TensorFlow only when a Segmenter is really needed

    images = read_images(samples)
    tables = {}
    resolved = list(dict.fromkeys((resolve_engine(engine), resolve_precision(precision)) for engine, precision in runs))
    for engine, precision in resolved:
        for tta in dict.fromkeys(option["tta"] for option in options):
            segmenter = Segmenter(model, card, tta=tta, postprocess=False, precision=precision, engine=engine)
            results = list(segmenter.segment_many(images, batch_size=batch_size))
            for option in (option for option in options if option["tta"] == tta):
                labels = [
                    keep_central_cell(result.labels, result.probabilities) if option["postprocess"] else result.labels
                    for result in results
                ]
                summary = summarize(evaluate_labels(labels, samples, segmenter.task))
                tables[engine, precision, tta, option["postprocess"]] = summary.assign(
                    engine=engine, precision=precision, tta=tta, postprocess=option["postprocess"]
                )
    table = pd.concat([tables[(*run, option["tta"], option["postprocess"])] for run in resolved for option in options], ignore_index=True)
    return table.pivot_table(
        index=["engine", "precision", "tta", "postprocess", "dataset"], columns="target", values="dice_mean", sort=False
    ).rename_axis(columns=None).reset_index()


# --------------------------------------------------------------------------- cross-validation


def fit_and_evaluate(config, train_rows: pd.DataFrame, val_rows: pd.DataFrame, scored_rows: pd.DataFrame):
    """Train a model of `config` (a params.RunConfig) on `train_rows` (best epoch chosen on
    `val_rows`), then score it on `scored_rows` at native resolution, all in memory.
    Returns (per-image table, training history)."""
    from wbcseg.model import model_card
    from wbcseg.predict import Segmenter
    from wbcseg.preprocess import model_arrays
    from wbcseg.train import fit

    arrays = {}
    for name, rows in (("train", train_rows), ("val", val_rows)):
        images, labels = model_arrays(rows, config.input_size)
        arrays[name] = {"images": images, "labels": labels}
    model, history = fit(config, arrays["train"], arrays["val"])
    return evaluate_images(Segmenter(model, model_card(config)), scored_rows), history


def cross_validate(config, samples: pd.DataFrame, folds: int, seed: int, val_fraction: float = 0.2) -> pd.DataFrame:
    """k-fold cross-validation of one variant (`config`, a params.RunConfig) over `samples`.

    For each fold, a model is trained on the other folds, a stratified `val_fraction` of which
    chooses the best epoch, and the held-out fold is scored at native resolution. Meant for the
    train and validation images only, so the test split stays unseen. Returns the per-image table
    with a `fold` column.
    """
    from wbcseg.split import kfold_assignments, stratified_split

    samples = samples[samples["dataset"].isin(config.datasets)].reset_index(drop=True)
    assignment = kfold_assignments(samples, folds, seed)
    tables = []
    for fold in range(folds):
        held_out = samples[assignment == fold].reset_index(drop=True)
        train_rows, val_rows = stratified_split(samples[assignment != fold], val_fraction, seed)
        per_image, _ = fit_and_evaluate(config, train_rows, val_rows, held_out)
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

