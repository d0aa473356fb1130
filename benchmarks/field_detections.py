"""What tells field mode's real nuclei from false ones: each candidate nucleus group of the tiled
pass on synthetic fields, with the measures of `wbcseg.fields_detect.Evidence`.

    python benchmarks/field_detections.py --model models/main --root . --split train
    python benchmarks/field_detections.py --model models/main --root . --split val --seed 1

Fields are built as in `benchmarks/fields.py` (one to four cells each at one magnification from
0.5x to 2x, plus empty fields), from the **training or validation** images only: the thresholds of
`wbcseg.fields_detect` are set here and never on the test images. Each field is brought to the training
scale with its true cell diameter; every nucleus group (after the size filter) is real when at
least 30 % of it lies on a true nucleus. Printed per dataset, for real and false groups: their
count, the range of each measure (darkness: median green against the field's; the mean nucleus
probability; blueness: median blue minus red against the field's) and how many of each field
mode keeps (`wbcseg.fields_detect.plausible`). `--csv` writes every group's row, with its field and place.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from fields import build_fields, load_segmenter, samples
from wbcseg.card import model_cell_diameter
from wbcseg.data import read_image, read_mask
from wbcseg.fields_detect import (
    MIN_NUCLEUS_PROBABILITY,
    field_tone,
    group_nuclei,
    looks_like_nucleus,
    nucleus_evidence,
    nucleus_map,
    to_model_scale,
)
from wbcseg.fields_scale import DARK_FRACTION, equivalent_diameter
from wbcseg.synthetic_fields import rescale

#: A group is a real nucleus when at least this share of it lies on a true nucleus.
REAL_SHARE = 0.3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/main", help="trained model directory (model.keras + model_card.json)")
    parser.add_argument("--root", default=".", help="project root holding data/processed/split.csv and data/raw")
    parser.add_argument("--split", default="train", choices=("train", "val"), help="images the fields are built from")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--empty", type=int, default=10, help="empty fields per dataset")
    parser.add_argument("--csv", help="also write every group's row here")
    args = parser.parse_args()
    root = Path(args.root)
    segmenter = load_segmenter(args.model, root, {"tta": False})
    trained = model_cell_diameter(segmenter.card)
    table = samples(root, args.split)
    crops = {d: [(read_image(r.image), read_mask(r.mask)) for r in rows.itertuples()] for d, rows in table.groupby("dataset")}
    typical = {d: np.median([equivalent_diameter(np.count_nonzero(m)) for _, m in items]) for d, items in crops.items()}

    rows = []
    fields = build_fields(crops, np.random.default_rng(args.seed), args.empty, 4)
    for number, (dataset, field, used) in enumerate(fields):
        ids = range(1, len(used) + 1)
        diameter = np.median([equivalent_diameter((field.instances == k).sum()) for k in ids]) if used else typical[dataset] * field.scale
        factor = trained / diameter
        small = to_model_scale(field.image, factor)
        probability = nucleus_map(small, segmenter)
        true_nucleus = rescale((field.classes == 2).astype(np.uint8), factor, labels=True)[: small.shape[0], : small.shape[1]] > 0
        tone = field_tone(small)
        for group, (x, y) in group_nuclei(probability > 0, trained):
            evidence = nucleus_evidence(small, tone, probability, group, (x, y))
            on_nucleus = true_nucleus[y : y + group.shape[0], x : x + group.shape[1]][group].mean()
            rows_, cols_ = np.nonzero(group)
            rows.append({
                "dataset": dataset, "field": number, "cells in field": len(used), "magnification": field.scale,
                "x": (x + cols_.mean() + 0.5) / factor - 0.5, "y": (y + rows_.mean() + 0.5) / factor - 0.5,
                "real": bool(on_nucleus >= REAL_SHARE), "green to median": evidence.darkness,
                "nucleus probability": evidence.confidence, "blueness": evidence.blueness, "kept": looks_like_nucleus(evidence),
            })
    groups = pd.DataFrame(rows)
    if args.csv:
        groups.to_csv(args.csv, index=False)
    groups["dark enough"] = groups["green to median"] <= DARK_FRACTION
    groups["confident"] = groups["nucleus probability"] >= MIN_NUCLEUS_PROBABILITY
    print(f"nucleus groups on fields of the {args.split} images (seed {args.seed}), by dataset and truth:")
    summary = groups.groupby(["dataset", "real"]).agg(
        groups=("kept", "size"),
        green_min=("green to median", "min"), green_max=("green to median", "max"),
        probability_min=("nucleus probability", "min"), probability_max=("nucleus probability", "max"),
        blueness_min=("blueness", "min"), blueness_max=("blueness", "max"),
        dark_enough=("dark enough", "sum"), confident=("confident", "sum"), kept=("kept", "sum"),
    )
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))
    dark = groups[groups["dark enough"]]
    print("nucleus probability of the groups dark enough, by truth:")
    print(dark.groupby(["dataset", "real"])["nucleus probability"].describe().to_string(float_format=lambda v: f"{v:.3f}"))
    print("blueness of every group, by truth:")
    print(groups.groupby(["dataset", "real"])["blueness"].describe().to_string(float_format=lambda v: f"{v:.1f}"))


if __name__ == "__main__":
    main()
