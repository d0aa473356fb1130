"""Input size and loss, chosen by measurement: train the main variant briefly with each choice and
score it on the VALIDATION split at native resolution (the test split plays no part in choosing).

    python benchmarks/training_choices.py --sizes 128 256 --losses dice_ce focal_dice tversky --epochs 6

Every size is tried with the variant's own loss, and every loss at the variant's own size. Prints,
per run: training time and seconds per epoch, then mean validation Dice per dataset and target.
Run it from the repository root after `dvc repro preprocess` (it reads data/raw and the split).
The same choices as queued DVC experiments, each judged by `dvc exp show` on the validation
metrics of train@main: docs/pipeline.md, "Experiments".
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import pandas as pd

from wbcseg import crossval, scoring, split
from wbcseg.params import LOSSES, check_input_size, extra_datasets, load_params, run_config
from wbcseg.paths import stage_paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[128, 256])
    parser.add_argument("--losses", nargs="*", default=[], choices=LOSSES)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--variant", default="main")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()

    params = load_params(args.params)
    base = dataclasses.replace(run_config(params, args.variant), epochs=args.epochs)
    for size in args.sizes:
        check_input_size(size, "--sizes")
    runs = [dataclasses.replace(base, input_size=size) for size in args.sizes]
    runs += [dataclasses.replace(base, loss=loss) for loss in args.losses if loss != base.loss or not args.sizes]
    assigned = split.read_split(stage_paths(".")["split"], stage_paths(".")["raw"], extra_datasets(params))
    train_rows = split.select(assigned, "train", base.datasets)
    val_rows = split.select(assigned, "val", base.datasets)
    print(f"variant {args.variant}: {len(train_rows)} training and {len(val_rows)} validation images, {args.epochs} epochs per run", flush=True)
    rows = []
    for config in runs:
        name = f"{config.input_size}px {config.loss}"
        start = time.perf_counter()
        per_image, history = crossval.fit_and_evaluate(config, train_rows, val_rows, val_rows)
        seconds = time.perf_counter() - start
        print(f"{name}: {seconds:.0f} s ({seconds / args.epochs:.1f} s per epoch, evaluation included), "
              f"best epoch {int(history['val_dice'].idxmax())}", flush=True)
        summary = scoring.summarize(per_image)
        rows += [{"run": name, "dataset": r.dataset, "target": r.target, "val_dice": r.dice_mean} for r in summary.itertuples()]
    table = pd.DataFrame(rows).pivot_table(index=["dataset", "target"], columns="run", values="val_dice", sort=False)
    print("\nMean validation Dice at native resolution:")
    print(table.round(4).to_string())


if __name__ == "__main__":
    main()
