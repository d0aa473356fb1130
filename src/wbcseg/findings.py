"""What each report says first: its key findings in a few sentences of Markdown, computed from the
stage's tables, and the compact tables that follow them.

Every function is pure (tables in, text out), so each sentence is tested, and no number in a report
is typed by hand. Dice is written with 3 decimals, as in every table of the reports.
"""

from __future__ import annotations

import pandas as pd

from wbcseg.classes import CLASS_NAMES
from wbcseg.data import ALL_DATASETS

#: Shown where a value is missing (not evaluated, undefined).
MISSING = "—"
#: How to run the cross-validation study, in the report that would otherwise be empty.
CROSSVAL_COMMAND = "dvc exp run -S crossval.folds=5 crossval"


def compact(table: pd.DataFrame, digits: int = 3):
    """A table for a report: numbers with `digits` decimals, missing values as a dash, text aligned
    left, no index column."""
    text = [column for column in table.columns if not pd.api.types.is_numeric_dtype(table[column])]
    return (
        table.style.format(precision=digits, na_rep=MISSING, thousands=None)
        .hide(axis="index")
        .set_properties(subset=text, **{"text-align": "left"})
        .set_table_styles({column: [{"selector": "th", "props": "text-align: left"}] for column in text})
    )


def bullets(lines) -> str:
    """A Markdown list of the lines that are not empty."""
    return "\n".join(f"- {line}" for line in lines if line)


def count(n: int, noun: str) -> str:
    """'1 image', '3 images'."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _dataset_name(label: str) -> str:
    """'Dataset 1' for 'd1' (a summary's dataset label) or 1."""
    return f"Dataset {str(label).removeprefix('d')}"


def _datasets_name(datasets) -> str:
    """'Dataset 1', 'Datasets 1 and 2' for dataset numbers."""
    datasets = [str(d) for d in datasets]
    return f"Dataset {datasets[0]}" if len(datasets) == 1 else f"Datasets {', '.join(datasets[:-1])} and {datasets[-1]}"


def _size_range(stats: pd.DataFrame) -> str:
    sizes = sorted({(int(h), int(w)) for h, w in zip(stats["height"], stats["width"])}, key=lambda hw: hw[0] * hw[1])
    if len(sizes) == 1:
        return f"all {sizes[0][1]}×{sizes[0][0]} px"
    return f"{len(sizes)} sizes from {sizes[0][1]}×{sizes[0][0]} to {sizes[-1][1]}×{sizes[-1][0]} px"


def explore_findings(samples: pd.DataFrame, stats: pd.DataFrame, audit: pd.DataFrame) -> str:
    """Images per dataset and their sizes, the commonest and rarest cell types, how much of an image
    each class covers, and what the mask-value audit found (`data.list_samples`, `image_stats`,
    `mask_value_audit`)."""
    per_dataset = [
        f"{_dataset_name(dataset)}: {count(len(rows), 'image')}, {_size_range(rows)}" for dataset, rows in stats.groupby("dataset")
    ]
    types = samples["cell_type_name"].value_counts()
    fractions = stats.groupby("dataset")[[f"frac_{name}" for name in CLASS_NAMES]].mean()
    cover = "; ".join(
        f"{_dataset_name(dataset)} {row['frac_nucleus']:.0%} nucleus and {row['frac_cytoplasm']:.0%} cytoplasm"
        for dataset, row in fractions.iterrows()
    )
    if len(audit):
        masks = (f"{count(len(audit), 'mask')} {'holds' if len(audit) == 1 else 'hold'} grey values other than 0/128/255 "
                 f"({count(int(audit['stray_pixels'].sum()), 'pixel')} in all), snapped to the nearest class when read.")
    else:
        masks = "Every mask holds only the values 0, 128 and 255."
    return bullets([
        "; ".join(per_dataset) + ".",
        f"The commonest cell type is the {types.index[0]} ({types.iloc[0] / types.sum():.0%} of the images); "
        f"the rarest is the {types.index[-1]} ({count(int(types.iloc[-1]), 'image')}).",
        f"The white blood cell is a minority of the pixels: {cover} on average, the rest background.",
        masks,
    ])


def split_findings(assigned: pd.DataFrame, input_size: int, seed: int, min_cell_diameter: float | None = None) -> str:
    """How many images went to each split, per dataset, and what is resized (`split.make_split`,
    `preprocess.model_input`)."""
    counts = pd.crosstab(assigned["dataset"], assigned["split"])
    per_dataset = "; ".join(
        f"{_dataset_name(dataset)} {row.get('train', 0)} / {row.get('val', 0)} / {row.get('test', 0)}"
        for dataset, row in counts.iterrows()
    )
    return bullets([
        f"{len(assigned)} images split into training / validation / test: {per_dataset}, stratified by dataset "
        f"and cell type (seed {seed}).",
        f"Training and validation images are resized to {input_size}×{input_size} px for the network"
        + ("" if min_cell_diameter is None else f", zoomed in on their white cell where it would be narrower than {min_cell_diameter:g} px")
        + "; test images stay at their native size and are segmented there in 04_evaluate.",
    ])


def training_findings(history: pd.DataFrame, card: dict) -> str:
    """The best validation Dice and its epoch, the training Dice beside it, whether the validation
    Dice was still rising, and what the model saw (`train.fit` history with an epoch index; the card)."""
    best = int(history["val_dice"].idxmax())
    run = len(history)
    params = card.get("train_params", {})
    lines = [
        f"Best validation Dice {history.loc[best, 'val_dice']:.3f} at epoch {best} of {run}; the saved model holds "
        f"the weights of that epoch (training Dice {history.loc[best, 'dice']:.3f} then).",
        f"Validation loss was lowest at epoch {int(history['val_loss'].idxmin())} ({history['val_loss'].min():.3f}).",
        "Validation Dice was still rising at the last epoch: more epochs may help." if best == run and run > 1 else "",
        f"{card.get('n_train', MISSING)} training and {card.get('n_val', MISSING)} validation images of "
        f"{_datasets_name(params.get('datasets', []))} at {card['input_size']} px; {card['task']} task, "
        f"loss {params.get('loss', MISSING)}, augmentation {'on' if params.get('augment') else 'off'}.",
    ]
    return bullets(lines)


def card_table(card: dict) -> pd.DataFrame:
    """The facts of a model card that a reader checks, one per row (the card itself is in the model folder)."""
    params = card.get("train_params", {})
    facts = {
        "task": card["task"],
        "classes": ", ".join(card["classes"]),
        "input size (px)": card["input_size"],
        "backbone": card["backbone"],
        "encoder weights": card.get("encoder_weights") or "none (from scratch)",
        "trained on datasets": ", ".join(map(str, params.get("datasets", []))),
        "epochs run / best": f"{card.get('epochs_run', MISSING)} / {card.get('best_epoch', MISSING)}",
        "batch size, learning rate": f"{params.get('batch_size', MISSING)}, {params.get('learning_rate', MISSING)}",
        "loss, augmentation": f"{params.get('loss', MISSING)}, {'on' if params.get('augment') else 'off'}",
        **{f"validation {name}": f"{value:.3f}" for name, value in (card.get("val_metrics") or {}).items()},
        "data": card.get("data", {}).get("source", MISSING),
    }
    return pd.DataFrame({"": list(facts), "value": [str(v) for v in facts.values()]})


def dice_text(mean, std=None) -> str:
    """'0.971 ± 0.012' (or '0.971' without a spread, a dash when missing)."""
    if pd.isna(mean):
        return MISSING
    return f"{mean:.3f}" if std is None or pd.isna(std) else f"{mean:.3f} ± {std:.3f}"


def _narrow(summary: pd.DataFrame, dice: tuple[str, str, str], columns: dict[str, str]) -> pd.DataFrame:
    """Dataset, target, Dice as 'mean ± sd' (heading, mean column, sd column), then `columns` (heading: column)."""
    heading, mean, sd = dice
    return pd.DataFrame({
        "dataset": summary["dataset"],
        "target": summary["target"],
        heading: [dice_text(m, s) for m, s in zip(summary[mean], summary[sd])],
        **{name: summary[column] for name, column in columns.items()},
    })


def summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    """A `scoring.summarize` table narrow enough for a page: Dice as mean ± sd, then the means of the other metrics."""
    return _narrow(summary, ("Dice (mean ± sd)", "dice_mean", "dice_std"), {
        "IoU": "iou_mean", "precision": "precision_mean", "recall": "recall_mean", "HD95 (px)": "hd95_mean", "images": "n_images",
    })


def evaluation_findings(summary: pd.DataFrame, per_image: pd.DataFrame, model: str) -> str:
    """What was evaluated (`model`, one line), then per test dataset: mean Dice ± std of each target
    and the whole cell's HD95; then the worst image and the undefined distances (`scoring.summarize`
    and its per-image table)."""
    lines = [f"{model}."]
    for dataset, rows in summary[summary["dataset"] != ALL_DATASETS].groupby("dataset", sort=True):
        rows = rows.set_index("target")
        dice = ", ".join(f"{target} {dice_text(row.dice_mean, row.dice_std)}" for target, row in rows.iterrows())
        lines.append(
            f"{_dataset_name(dataset)} ({int(rows['n_images'].iloc[0])} held-out images): mean Dice {dice}; "
            f"whole-cell HD95 {rows.loc['cell', 'hd95_mean']:.1f} px."
        )
    cells = per_image[per_image["target"] == "cell"]
    worst = cells.loc[cells["dice"].idxmin()]
    lines.append(
        f"Worst image: {worst['sample_id']} (whole-cell Dice {worst['dice']:.3f}); median whole-cell Dice "
        f"{cells['dice'].median():.3f}."
    )
    undefined = int(per_image["hd95"].isna().sum())
    if undefined:
        lines.append(f"HD95 is undefined for {count(undefined, 'image-target pair')}: the prediction or the truth is empty there.")
    return bullets(lines)


def comparison_findings(table: pd.DataFrame, reference: str, baseline: str) -> str:
    """Each model's whole-cell Dice beside the `reference` model's on the same test dataset
    (`report.comparison_table`), a sentence per model."""
    cells = table[(table["target"] == "cell") & (table["dataset"] != ALL_DATASETS)]
    ours = cells[cells["model"] == reference].set_index("dataset")["dice_mean"]
    lines = [
        f"{reference} (trained on {cells.loc[cells['model'] == reference, 'trained_on'].iloc[0]}): whole-cell Dice "
        + ", ".join(f"{value:.3f} on {_dataset_name(d)}" for d, value in ours.items()) + "."
    ]
    for model, rows in cells[cells["model"] != reference].groupby("model", sort=False):
        what = "no training" if model == baseline else f"trained on {rows['trained_on'].iloc[0]}, {rows['task'].iloc[0]} task"
        parts = [
            f"{row.dice_mean:.3f} on {_dataset_name(row.dataset)} ({row.dice_mean - ours[row.dataset]:+.3f} against {reference})"
            if row.dataset in ours else f"{row.dice_mean:.3f} on {_dataset_name(row.dataset)}"
            for row in rows.itertuples()
        ]
        lines.append(f"{model} ({what}): whole-cell Dice {', '.join(parts)}.")
    return bullets(lines)


def targets_findings(targets: pd.DataFrame) -> str:
    """How many quality targets are met, and a sentence per target missed with its gap
    (`report.quality_targets_table`: a minimum Dice, or a rival model to beat)."""
    missed = targets[~targets["met"]]
    if missed.empty:
        return f"All {count(len(targets), 'quality target')} are met."
    lines = [f"{len(missed)} of {len(targets)} quality targets are missed:"]
    for row in missed.itertuples():
        where = f"{row.model} on {_dataset_name(row.dataset)} {row.target}"
        if pd.isna(row.reached):
            lines.append(f"- {where}: not evaluated (it needs Dice {row.requirement}).")
        elif pd.isna(row.required):
            lines.append(f"- {where}: Dice {row.reached:.3f}; {row.requirement.removeprefix('> ')} was not evaluated.")
        else:
            lines.append(f"- {where}: Dice {row.reached:.3f}, needs {row.requirement} ({row.required:.3f}): short by {-row.gap:.3f}.")
    return "\n".join(lines)


def crossval_findings(summary: pd.DataFrame, folds: int, variant: str, n_images: int) -> str:
    """Per dataset and target, the mean over folds and the spread of the fold means (`crossval.crossval_summary`)."""
    lines = [f"{folds}-fold cross-validation of {variant} on {n_images} training and validation images (the test split stays unseen)."]
    for dataset, rows in summary.groupby("dataset", sort=True):
        if dataset == ALL_DATASETS:
            continue
        parts = [
            f"{row.target} {row.dice_mean_over_folds:.3f} ± {row.dice_std_over_folds:.3f} "
            f"(folds {row.dice_min_over_folds:.3f} to {row.dice_max_over_folds:.3f})"
            for row in rows.itertuples()
        ]
        lines.append(f"{_dataset_name(dataset)}: mean Dice over folds {'; '.join(parts)}.")
    return bullets(lines)


def crossval_table(summary: pd.DataFrame) -> pd.DataFrame:
    """A `crossval.crossval_summary` table narrow enough for a page: Dice over folds as mean ± sd of
    the fold means, their range, the mean HD95, folds and images."""
    return _narrow(summary, ("Dice over folds (mean ± sd)", "dice_mean_over_folds", "dice_std_over_folds"), {
        "lowest fold": "dice_min_over_folds", "highest fold": "dice_max_over_folds", "HD95 (px)": "hd95_mean_over_folds",
        "folds": "folds", "images": "n_images",
    })


def crossval_not_run(variant: str, n_images: int) -> str:
    """The one line of the cross-validation report when it was not asked for."""
    return (
        f"Not run (`crossval.folds` is 0). To run 5-fold cross-validation of {variant} on its {n_images} training "
        f"and validation images: `{CROSSVAL_COMMAND}`."
    )
