"""Score label maps against the dataset's masks: per-image tables and their summaries, free of TensorFlow.

Targets are the regions a pathologist reads: `cell` (the whole WBC, cytoplasm and nucleus
together), `nucleus` and `cytoplasm`; a binary model is scored on `cell` only
(`classes.TASK_TARGETS`). The metrics and their edge cases are `wbcseg.metrics`'.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from wbcseg.classes import TASK_CLASSES, TASK_TARGETS, check_task, target_masks, task_labels, truth_masks
from wbcseg.data import ALL_DATASETS, NEAREST, dataset_label, read_image, read_mask
from wbcseg.metrics import METRICS, confusion_counts, segmentation_metrics

PER_IMAGE_COLUMNS = ("sample_id", "dataset", "cell_type", "target", *METRICS, "height", "width")


def evaluate_labels(pred_labels, samples: pd.DataFrame, task: str) -> pd.DataFrame:
    """Per-image, per-target metrics (long format, PER_IMAGE_COLUMNS) of predicted label maps
    (task label space, native resolution, in `samples` order) against the samples' masks."""
    check_task(task)
    pred_labels = list(pred_labels)
    if len(pred_labels) != len(samples):
        raise ValueError(f"{len(pred_labels)} predictions for {len(samples)} samples")
    rows = []
    for labels, (_, row) in zip(pred_labels, samples.iterrows()):
        truth = truth_masks(read_mask(row["mask"], values=row.get("mask_values", NEAREST)), task)
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


def pixel_confusion(pred_labels, samples: pd.DataFrame, task: str) -> pd.DataFrame:
    """Pixels of each true class (rows) predicted as each class (columns), summed over the samples,
    in the task's classes (background / cytoplasm / nucleus, or background / cell)."""
    classes = TASK_CLASSES[task]
    counts = np.zeros((len(classes), len(classes)), np.int64)
    for labels, mask in zip(pred_labels, samples["mask"]):
        counts += confusion_counts(labels, task_labels(read_mask(mask), task), len(classes))
    return pd.DataFrame(counts, index=pd.Index(classes, name="truth"), columns=pd.Index(classes, name="prediction"))


def read_images(samples: pd.DataFrame) -> list[np.ndarray]:
    """The samples' images (RGB uint8, native resolution), in order."""
    return [read_image(path) for path in samples["image"]]


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


def json_number(value, digits: int = 4):
    return None if pd.isna(value) else round(float(value), digits)


def headline_metrics(summary: pd.DataFrame, protocol: str) -> dict:
    """A JSON-ready {protocol, <dataset>: {<target>: {metric: mean, ..., n_images, hd95_nan}}} for
    DVC metrics; NaN becomes null."""
    out: dict = {"protocol": protocol}
    for row in summary.itertuples(index=False):
        entry = {metric: json_number(getattr(row, f"{metric}_mean")) for metric in METRICS}
        entry["n_images"] = int(row.n_images)
        entry["hd95_nan"] = int(row.hd95_nan)
        out.setdefault(row.dataset, {})[row.target] = entry
    return out


def dice_metrics(summary: pd.DataFrame, column: str = "dice_mean") -> dict:
    """{<dataset>: {<target>: mean Dice}} per test dataset (no pooled 'all'), 3 decimals: a model's
    DVC metrics (reports/<variant>/dice.json). Every model has the same keys, so `dvc metrics show`
    lists the models as rows of one narrow table."""
    out: dict = {}
    for row in summary[summary["dataset"] != ALL_DATASETS].itertuples(index=False):
        out.setdefault(row.dataset, {})[row.target] = json_number(getattr(row, column), 3)
    return out
