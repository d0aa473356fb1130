"""Tables across models: the comparison of variants and baselines, the quality targets and their
DVC metrics, the published figures quoted beside them, and the index page that links every report."""

from __future__ import annotations

import numpy as np
import pandas as pd

from wbcseg.data import ALL_DATASETS, dataset_label

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


def targets_metrics(targets: pd.DataFrame) -> dict:
    """How many quality targets (`quality_targets_table`) are met and missed: the compare stage's DVC metrics."""
    met = int(targets["met"].sum())
    return {"targets_met": met, "targets_missed": len(targets) - met}


#: Every report of the pipeline in reading order, with what it shows; {variant} stands for each variant.
REPORTS = (
    ("01_explore.html", "the datasets: images per cell type, sizes, mask values, class balance"),
    ("02_preprocess.html", "the seeded split into training, validation and test images, and the resizing"),
    ("{variant}/03_train.html", "training: curves, best epoch, model card"),
    ("{variant}/04_evaluate.html", "held-out evaluation: Dice per target, distributions, worst and best images"),
    ("05_compare.html", "every model beside the classical baseline and the published figures; the quality targets"),
    ("06_crossval.html", "k-fold cross-validation: how much the results depend on one split (run on request)"),
)


def report_links(variants, table: pd.DataFrame) -> list[str]:
    """One Markdown line per report (REPORTS, per-variant ones for each of `variants`); an evaluation
    line ends with that model's whole-cell Dice per test dataset from the comparison `table`."""
    cells = table[(table["target"] == "cell") & (table["dataset"] != ALL_DATASETS)]
    lines = []
    for href, what in REPORTS:
        for variant in variants if "{variant}" in href else [None]:
            link = href.format(variant=variant)
            line = f"[{link.removesuffix('.html')}]({link}): {what}"
            if href.endswith("04_evaluate.html"):
                dice = cells[cells["model"] == variant]
                line += " (whole-cell Dice " + ", ".join(f"{d:.3f} on {s}" for s, d in zip(dice["dataset"], dice["dice_mean"])) + ")"
            lines.append(line)
    return lines


def index_page(title: str, links: list[str], headline: pd.DataFrame, findings: str) -> str:
    """reports/index.html: the `title`, the `findings` (Markdown), the `headline` table and a list of `links`."""
    import mistune

    markdown = "\n\n".join([
        f"# {title}", findings, "## Results",
        "Mean Dice ± standard deviation over the held-out test images, at their native resolution.",
        headline.to_markdown(index=False), "## Reports", "\n".join(f"- {line}" for line in links),
    ])
    body = mistune.create_markdown(plugins=["table"])(markdown)
    style = "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;line-height:1.4}" \
            "table{border-collapse:collapse}th,td{padding:.2em .6em;border-bottom:1px solid #ccc}"
    return f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title><style>{style}</style></head>\n<body>\n{body}</body></html>\n"
