"""Field mode's scale estimate against other rules, on synthetic fields with known cells.

    python benchmarks/scale_estimate.py --model models/main --root . --fields val:1 val:2 train:1

Fields are built as in `benchmarks/fields.py` (one to four cells each at one magnification from
0.5x to 2x, plus five empty fields per dataset), from the **training or validation** images of
each SPLIT:SEED given; the estimate is a design choice, so the test images are not offered. Each
field's estimate (`wbcseg.fields.estimate_cell_diameter`: the cells that the crop model outlines
around the darkest blobs, their median weighted by each blob's area, rounds without TTA until it
settles, then one with the card's TTA) is set against the true median cell diameter, and so are
two other rules: the same with every round without TTA, and the rule before the area weighting
(the plain median of the same cells, two rounds, with the card's TTA, as `wbcseg predict` ran it).
Printed per rule and dataset: fields off by more than 20 %, fields left without an estimate, the
median and worst error, how many empty fields got an estimate (field mode then looks for cells
in them), and the seconds per field.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fields import build_fields, load_segmenter, samples
from wbcseg.data import read_image, read_mask
from wbcseg.fields import ESTIMATE_CELLS, MIN_ESTIMATE_PX, blob_cells, estimate_cell_diameter
from wbcseg.fields_scale import dark_blobs, equivalent_diameter

#: A field whose estimate is off by more than this share of its true median cell diameter.
OFF = 0.2


def plain_median_estimate(image: np.ndarray, segmenter) -> float | None:
    """The rule before: the plain median of the blobs' suggestions, then of their cells, two rounds."""
    blobs = dark_blobs(image, ESTIMATE_CELLS)
    if not blobs:
        return None
    diameter = float(np.median([d for _, d in blobs]))
    for _ in range(2):
        cells = blob_cells(image, segmenter, blobs, diameter)
        if not cells:
            return None
        diameter = float(np.median([d for _, d in cells]))
    return diameter if diameter >= MIN_ESTIMATE_PX else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/main", help="trained model directory (model.keras + model_card.json)")
    parser.add_argument("--root", default=".", help="project root holding data/processed/split.csv and data/raw")
    parser.add_argument("--fields", nargs="+", default=["val:1", "val:2", "train:1"], metavar="SPLIT:SEED", help="train or val, and the fields' seed")
    args = parser.parse_args()
    root = Path(args.root)
    segmenter = load_segmenter(args.model, root, {})
    plain = load_segmenter(args.model, root, {"tta": "none"})
    rules = {
        "field mode": estimate_cell_diameter,
        "every round without TTA": lambda image, _: estimate_cell_diameter(image, plain),
        "plain median, two rounds (before)": plain_median_estimate,
    }

    def timed(rule, image) -> dict:
        start = time.perf_counter()
        estimate = rules[rule](image, segmenter)
        return {rule: estimate, f"{rule} seconds": time.perf_counter() - start}

    rows = []
    for spec in args.fields:
        split, seed = spec.split(":")
        if split not in ("train", "val"):
            parser.error(f"--fields {spec}: the split must be train or val")
        table = samples(root, split)
        crops = {d: [(read_image(r.image), read_mask(r.mask)) for r in g.itertuples()] for d, g in table.groupby("dataset")}
        for dataset, field, used in build_fields(crops, np.random.default_rng(int(seed)), 5, 4):
            truth = np.median([equivalent_diameter((field.instances == k).sum()) for k in range(1, len(used) + 1)]) if used else np.nan
            rows.append({"dataset": dataset, "cells": len(used), "truth": truth, **{k: v for rule in rules for k, v in timed(rule, field.image).items()}})
    fields = pd.DataFrame(rows)
    real = fields["cells"] > 0
    print(f"synthetic fields of {', '.join(args.fields)}: {real.sum()} with white cells, {(~real).sum()} empty")
    summary = []
    for rule in rules:
        error = (fields[rule].astype(float) / fields["truth"] - 1).abs()
        for dataset in sorted(fields["dataset"].unique()):
            mine = real & (fields["dataset"] == dataset)
            summary.append({
                "rule": rule, "dataset": dataset, "fields": int(mine.sum()), f"off by > {OFF:.0%}": int((error[mine] > OFF).sum()),
                "no estimate": int(fields[rule][mine].isna().sum()), "median error": error[mine].median(), "worst error": error[mine].max(),
                "empty fields with an estimate": int(fields[rule][~real & (fields["dataset"] == dataset)].notna().sum()),
                "seconds per field": fields[f"{rule} seconds"][fields["dataset"] == dataset].mean(),
            })
    print(pd.DataFrame(summary).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
