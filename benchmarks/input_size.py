"""Which input size? Train the main variant at each size for a few epochs and score it on the
VALIDATION split at native resolution (the test split plays no part in choosing).

    python benchmarks/input_size.py --sizes 128 256 --epochs 8

Prints, per size: seconds per epoch, total training time, and mean validation Dice per dataset and
target. Run it from the repository root after `dvc repro preprocess` (it reads data/raw and the split).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import pandas as pd

from wbcseg import evaluate, split
from wbcseg.notebooks import stage_paths
from wbcseg.params import check_input_size, load_params, run_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--variant", default="main")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()

    params = load_params(args.params)
    paths = stage_paths(".")
    assigned = split.read_split(paths["split"], paths["raw"])
    rows = []
    for size in args.sizes:
        check_input_size(size, "--sizes")
        config = dataclasses.replace(run_config(params, args.variant), input_size=size, epochs=args.epochs)
        train_rows = split.select(assigned, "train", config.datasets)
        val_rows = split.select(assigned, "val", config.datasets)
        start = time.perf_counter()
        per_image, history = evaluate.fit_and_evaluate(config, train_rows, val_rows, val_rows)
        seconds = time.perf_counter() - start
        summary = evaluate.summarize(per_image)
        for row in summary[summary["dataset"] != "all"].itertuples():
            rows.append({"size": size, "dataset": row.dataset, "target": row.target, "val_dice": round(row.dice_mean, 4)})
        print(f"size {size}: {args.epochs} epochs on {len(train_rows)} images in {seconds:.0f} s "
              f"(~{seconds / args.epochs:.1f} s per epoch incl. evaluation), best epoch {int(history['val_dice'].idxmax())}", flush=True)
    table = pd.DataFrame(rows).pivot_table(index=["dataset", "target"], columns="size", values="val_dice")
    print("\nMean validation Dice at native resolution:")
    print(table.to_string())


if __name__ == "__main__":
    main()
