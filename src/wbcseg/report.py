"""Tables across models: the comparison of variants and baselines, the headline metrics for DVC,
the quality targets, and the published figures quoted beside them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from wbcseg.data import dataset_label, label_dataset
from wbcseg.scoring import ALL_DATASETS, json_number

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


def comparison_metrics(summaries: dict[str, pd.DataFrame], protocol: str, metrics=("dice", "iou", "hd95")) -> dict:
    """The headline of every model, compact enough to read in `dvc metrics show`:
    {protocol, <model>: {<dataset>: {<target>: {dice, iou, hd95}}}}, per dataset only (no 'all')."""
    out: dict = {"protocol": protocol}
    for name, summary in summaries.items():
        for row in summary[summary["dataset"] != ALL_DATASETS].itertuples(index=False):
            out.setdefault(name, {}).setdefault(row.dataset, {})[row.target] = {
                metric: json_number(getattr(row, f"{metric}_mean")) for metric in metrics
            }
    return out


def datasets_label(datasets) -> str:
    """'d1+d2' for datasets (1, 2); 'd1+d2+lab' with a lab dataset."""
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
        tested = [label_dataset(label) for label in per_dataset["dataset"].unique()]
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


def quality_targets_table(summary: pd.DataFrame, targets: dict) -> pd.DataFrame:
    """The quality targets (params.yaml `compare.targets`: {dataset: {target: minimum mean Dice}})
    beside the mean Dice reached: met (bool) and gap (reached - required; negative means short of
    the target, NaN when not evaluated)."""
    reached = summary.set_index(["dataset", "target"])["dice_mean"]
    table = pd.DataFrame(
        [{"dataset": dataset, "target": target, "metric": "dice", "required": float(required)}
         for dataset, by_target in targets.items() for target, required in by_target.items()],
        columns=["dataset", "target", "metric", "required"],
    )
    table["reached"] = [reached.get((dataset, target), np.nan) for dataset, target in zip(table["dataset"], table["target"])]
    table["gap"] = table["reached"] - table["required"]
    table["met"] = table["gap"] >= 0
    return table


def results_table(comparison: pd.DataFrame) -> pd.DataFrame:
    """The comparison (`comparison_table`) as one row per model and test dataset, with mean Dice ±
    standard deviation per target as text, for a reader (the README's results, a report's headline)."""
    rows = comparison[comparison["dataset"] != ALL_DATASETS].copy()
    rows["dice"] = [
        f"{mean:.3f} ± {std:.3f}" if pd.notna(std) else f"{mean:.3f}" for mean, std in zip(rows["dice_mean"], rows["dice_std"])
    ]
    table = rows.pivot_table(
        index=["model", "trained_on", "dataset", "n_images"], columns="target", values="dice", aggfunc="first", sort=False
    ).reset_index()
    table = table.rename(columns={"dataset": "tested_on", "n_images": "images"})
    targets = [t for t in ("cell", "nucleus", "cytoplasm") if t in table]
    return table[["model", "trained_on", "tested_on", *targets, "images"]].fillna("—")


def versus_table(base: pd.DataFrame, tuned: pd.DataFrame, names: tuple[str, str] = ("base", "fine-tuned")) -> pd.DataFrame:
    """Two models' summaries (`scoring.summarize`) on the same images side by side: mean Dice of
    each per dataset and target (and over all, where there are several datasets), and the gain of
    the second (negative: it does worse)."""
    columns = ["dataset", "target", "dice_mean"]
    table = base[[*columns, "n_images"]].merge(tuned[columns], on=["dataset", "target"], suffixes=("_0", "_1"))
    table["gain"] = table["dice_mean_1"] - table["dice_mean_0"]
    per_dataset = table[table["dataset"] != ALL_DATASETS]
    table = table if per_dataset["dataset"].nunique() > 1 else per_dataset  # 'all' would repeat the one dataset
    table = table.rename(columns={"dice_mean_0": f"dice {names[0]}", "dice_mean_1": f"dice {names[1]}"})
    return table[["dataset", "target", f"dice {names[0]}", f"dice {names[1]}", "gain", "n_images"]].reset_index(drop=True)
