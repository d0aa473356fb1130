"""Tables across models: the comparison of variants and baselines, the quality targets and their
DVC metrics, the published figures quoted beside them, and the index page that links every report."""

from __future__ import annotations

import numpy as np
import pandas as pd

from wbcseg.data import ALL_DATASETS, dataset_label, label_dataset

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
    """'d1+d2' for datasets (1, 2); 'd1+d2+lab' with a lab dataset."""
    return "+".join(dataset_label(d) for d in datasets)


def comparison_table(summaries: dict[str, pd.DataFrame], configs: dict) -> pd.DataFrame:
    """One row per model x dataset x target with mean Dice, IoU and HD95, beside what the model
    was trained on and tested on ('d1', 'd1+d2'). `configs` maps model names to params.RunConfig;
    a summary without a config (the classical baseline) is untrained and taken to be tested on the
    test split of the datasets it was summarised over. An 'all' row is kept only
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
                trained_on=datasets_label(config.datasets) if config else "none (no training)",
                tested_on=datasets_label(config.test_datasets if config else tested),
                cross_dataset=bool(config) and set(config.datasets) != set(config.test_datasets),
            )
        )
    columns = ["model", "task", "trained_on", "tested_on", "cross_dataset", "dataset", "target",
               "dice_mean", "dice_std", "iou_mean", "hd95_mean", "n_images"]
    return pd.concat(tables, ignore_index=True)[columns]


def quality_targets_table(summaries: dict[str, pd.DataFrame], targets: dict, rivals: dict | None = None) -> pd.DataFrame:
    """The quality targets beside the mean Dice reached, one row per model, dataset and target:
    met (bool) and gap (reached - required; negative is short of the target, NaN where not evaluated).

    `targets` is params.yaml's `compare.targets`: {model: {dataset: {target: minimum mean Dice}}}.
    `rivals` ({model: [other models]}) adds rows requiring the model to beat each other model on
    every dataset and target they share (required is then the rival's Dice, and met needs more).
    """
    def reached(model, dataset, target):
        if model not in summaries:
            return np.nan
        found = summaries[model].set_index(["dataset", "target"])["dice_mean"]
        return found.get((dataset, target), np.nan)

    rows = [
        {"model": model, "dataset": dataset, "target": target, "requirement": f">= {required:g}", "required": float(required),
         "reached": reached(model, dataset, target), "strict": False}
        for model, by_dataset in targets.items() for dataset, by_target in by_dataset.items() for target, required in by_target.items()
    ]
    for model, others in (rivals or {}).items():
        for other in others:
            if model not in summaries or other not in summaries:
                continue
            mine = summaries[model][summaries[model]["dataset"] != ALL_DATASETS]
            shared = mine.merge(summaries[other], on=["dataset", "target"], suffixes=("", "_other"))
            rows += [
                {"model": model, "dataset": row.dataset, "target": row.target, "requirement": f"> {other}",
                 "required": row.dice_mean_other, "reached": row.dice_mean, "strict": True}
                for row in shared.itertuples()
            ]
    table = pd.DataFrame(rows, columns=["model", "dataset", "target", "requirement", "required", "reached", "strict"])
    table["gap"] = table["reached"] - table["required"]
    table["met"] = np.where(table["strict"], table["gap"] > 0, table["gap"] >= 0)
    return table.drop(columns="strict")


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
    targets = [t for t in ("cell", "nucleus", "cytoplasm") if t in table]
    table = table[["model", "trained_on", "dataset", *targets, "n_images"]].fillna("—")
    return table.rename(columns={"trained_on": "trained on", "dataset": "tested on", "n_images": "images"})


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


FINETUNE_REPORT = "a model fine-tuned from another (`finetuned` in params.yaml) against the model it started from"


def report_links(variants, table: pd.DataFrame, finetuned=()) -> list[str]:
    """One Markdown line per report (REPORTS, per-variant ones for each of `variants`, then one per
    model of `finetuned`); an evaluation line ends with that model's whole-cell Dice per test
    dataset from the comparison `table`."""
    cells = table[(table["target"] == "cell") & (table["dataset"] != ALL_DATASETS)]
    lines = []
    reports = [*REPORTS[:4], *[(f"{name}/07_finetune.html", FINETUNE_REPORT) for name in finetuned], *REPORTS[4:]]
    for href, what in reports:
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
