"""Training choices, chosen by measurement: train a variant with each choice and score it on the
VALIDATION split at native resolution (the test split plays no part in choosing).

    python benchmarks/training_choices.py --sizes 128 256 --losses dice_ce focal_dice tversky --epochs 6
    python benchmarks/training_choices.py --variant d2_to_d1 --augments stain capture --seeds 1 2 3 4 5
    python benchmarks/training_choices.py --variant d2_to_d1 --epochs 30 60 --seeds 1 2 3

Every size is tried with the variant's own loss and augmentation, every loss at the variant's own
size, every augmentation level with the variant's own size and loss, and several `--epochs` with
everything else the variant's own (one `--epochs` sets the epochs of every run); each choice with every seed
of `--seeds` (default: the variant's own). The best epoch is chosen on the validation images of the
datasets the variant trains on, as the train stage does, and the scores are on the validation
images of the datasets it is tested on (the other dataset's, for a cross-dataset variant). Prints,
per run: training time, then mean validation Dice per dataset and target, per run and, over seeds,
each choice's mean, its range, and its difference from the first choice paired by seed.
Run it from the repository root after `dvc repro preprocess` (it reads data/raw and the split).
The same choices as queued DVC experiments, each judged by `dvc exp show` on the validation
metrics: docs/pipeline.md, "Experiments".
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import pandas as pd

from wbcseg import crossval, scoring, split
from wbcseg.params import AUGMENTATIONS, LOSSES, check_input_size, extra_datasets, load_params, run_config
from wbcseg.paths import stage_paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[])
    parser.add_argument("--losses", nargs="*", default=[], choices=LOSSES)
    parser.add_argument("--augments", nargs="*", default=[], choices=AUGMENTATIONS)
    parser.add_argument("--seeds", type=int, nargs="*", default=None, help="training seeds (default: the variant's own)")
    parser.add_argument("--epochs", type=int, nargs="+", default=None, help="epochs per run (default: the variant's own); several: compare them")
    parser.add_argument("--variant", default="main")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()

    params = load_params(args.params)
    base = run_config(params, args.variant)
    epoch_counts = args.epochs or [base.epochs]
    for epochs in epoch_counts:
        if epochs < 1:
            parser.error(f"--epochs: must be at least 1, got {epochs}")
    base = dataclasses.replace(base, epochs=epoch_counts[0])
    for size in args.sizes:
        check_input_size(size, "--sizes")
    choices = [(f"{size}px", {"input_size": size}) for size in args.sizes]
    choices += [(loss, {"loss": loss}) for loss in args.losses if loss != base.loss or not args.sizes]
    choices += [(f"augment {level}", {"augment": level}) for level in args.augments]
    choices += [(f"{epochs} epochs", {"epochs": epochs}) for epochs in epoch_counts if len(epoch_counts) > 1]
    if not choices:
        parser.error("nothing to compare: give --sizes, --losses, --augments or several --epochs")
    seeds = args.seeds or [base.seed]
    assigned = split.read_split(stage_paths(".")["split"], stage_paths(".")["raw"], extra_datasets(params))
    train_rows = split.select(assigned, "train", base.datasets)
    val_rows = split.select(assigned, "val", base.datasets)
    scored_rows = split.select(assigned, "val", base.test_datasets)
    print(
        f"variant {args.variant}: {len(train_rows)} training and {len(val_rows)} validation images, "
        f"scored on {len(scored_rows)} validation images, {', '.join(map(str, epoch_counts))} epochs per run",
        flush=True,
    )
    rows = []
    for seed in seeds:
        for name, change in choices:
            config = dataclasses.replace(base, seed=seed, **change)
            start = time.perf_counter()
            per_image, history = crossval.fit_and_evaluate(config, train_rows, val_rows, scored_rows)
            print(f"{name}, seed {seed}: {time.perf_counter() - start:.0f} s, best epoch {int(history['val_dice'].idxmax())}", flush=True)
            for r in scoring.summarize(per_image).itertuples():
                rows.append({"choice": name, "seed": seed, "dataset": r.dataset, "target": r.target, "val_dice": r.dice_mean})
    table = pd.DataFrame(rows)
    print("\nMean validation Dice at native resolution, per run:")
    print(table.pivot_table(index=["dataset", "target"], columns=["choice", "seed"], values="val_dice", sort=False).round(4).to_string())
    if len(seeds) > 1:
        first = choices[0][0]
        paired = table.merge(table[table["choice"] == first], on=["seed", "dataset", "target"], suffixes=("", "_first"))
        paired["difference"] = paired["val_dice"] - paired["val_dice_first"]
        summary = paired.groupby(["choice", "dataset", "target"], sort=False).agg(
            mean=("val_dice", "mean"),
            lowest=("val_dice", "min"),
            highest=("val_dice", "max"),
            difference=("difference", "mean"),
            least_difference=("difference", "min"),
            most_difference=("difference", "max"),
        )
        print(f"\nOver seeds {', '.join(map(str, seeds))}: each choice's mean and range, and its difference from {first} paired by seed:")
        print(summary.round(4).to_string())


if __name__ == "__main__":
    main()
