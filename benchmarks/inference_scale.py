"""Crop mode at other input sizes than the model's: does a cell seen larger segment better?

    python benchmarks/inference_scale.py --model models/main --root .

Each **validation** image (`data/processed/split.csv`; `--split test` exists for a final check,
never for a choice) is segmented as crop mode does it (the card's TTA, probabilities resized to
native size, arg-max, the central cell kept and filled), but with the whole image resized to each
of `--sizes` instead of only the model's input size (the network is fully convolutional; sides
must be multiples of 32). Printed: mean Dice per dataset and target for each size, for the
average of the probabilities at the first two sizes, and for an adaptive rule that picks, per
image, the size at which its central cell (measured at the model's input size) is as wide as the
training cells that the model card records (at least the input size, a multiple of 32, at most
the largest size given), with how often each size was picked. It answers whether Dataset 2's
crops, whose cells are smaller at the model's input size than Dataset 1's, should be segmented
(or trained) at a common cell scale. Runs TensorFlow (OpenVINO compiles one input size).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from fields import samples
from wbcseg.card import model_cell_diameter
from wbcseg.data import read_image, read_mask
from wbcseg.fields_scale import equivalent_diameter
from wbcseg.metrics import dice
from wbcseg.params import SIZE_MULTIPLE, TTA
from wbcseg.preprocess import resize_image, resize_probabilities
from wbcseg.segmenter import Segmenter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/main", help="trained model directory (model.keras + model_card.json)")
    parser.add_argument("--root", default=".", help="project root holding data/processed/split.csv and data/raw")
    parser.add_argument("--split", default="val", choices=("val", "test"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 160, 192], help="input sides; the first is the model's")
    parser.add_argument("--tta", choices=TTA, help="override the card's TTA")
    args = parser.parse_args()
    if any(size % SIZE_MULTIPLE for size in args.sizes):
        parser.error(f"--sizes: every size must be a multiple of {SIZE_MULTIPLE}")
    root = Path(args.root)
    segmenter = Segmenter.load(args.model, tta=args.tta, engine="tensorflow")
    if args.sizes[0] != segmenter.input_size:
        parser.error(f"--sizes: the first size must be the model's input size, {segmenter.input_size}")
    trained = model_cell_diameter(segmenter.card, Path(args.model))
    print(f"{segmenter.describe()}; training cells {trained:.1f} px wide at {segmenter.input_size} px")

    table = samples(root, args.split)
    rows, picks = [], []
    for row in table.itertuples():
        image, truth = read_image(row.image), read_mask(row.mask)
        # Native-size probabilities at each size; `finish` then decides labels as crop mode does.
        probs = {s: resize_probabilities(segmenter.predict_probabilities(resize_image(image, s)[None])[0], truth.shape) for s in args.sizes}
        first = segmenter.finish(truth.shape, probs[args.sizes[0]]).labels
        width = equivalent_diameter(np.count_nonzero(first)) * segmenter.input_size / truth.shape[0]
        wanted = segmenter.input_size * trained / max(width, 1.0)
        picked = int(np.clip(SIZE_MULTIPLE * round(wanted / SIZE_MULTIPLE), args.sizes[0], max(args.sizes)))
        picked = min(args.sizes, key=lambda s: abs(s - picked))
        picks.append({"dataset": row.dataset, "size": picked})
        variants = {str(s): probs[s] for s in args.sizes}
        if len(args.sizes) > 1:
            variants[f"mean of {args.sizes[0]} and {args.sizes[1]}"] = (probs[args.sizes[0]] + probs[args.sizes[1]]) / 2
        variants["adaptive"] = probs[picked]
        for name, p in variants.items():
            labels = segmenter.finish(truth.shape, p).labels
            rows.append({"dataset": f"D{row.dataset}", "size": name, "cell": dice(labels > 0, truth > 0),
                         "nucleus": dice(labels == 2, truth == 2), "cytoplasm": dice(labels == 1, truth == 1)})
    result = pd.DataFrame(rows).groupby(["dataset", "size"], sort=False).mean()
    print(f"\nmean {args.split} Dice at native resolution, {len(table)} images")
    print(result.to_string(float_format=lambda x: f"{x:.4f}"))
    print("\nsizes the adaptive rule picked (images):")
    print(pd.DataFrame(picks).value_counts().sort_index().to_string())


if __name__ == "__main__":
    main()
