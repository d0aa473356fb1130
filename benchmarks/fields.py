"""Field mode on synthetic blood-smear fields with ground truth, against crop mode on the same cells.

    python benchmarks/fields.py --model models/main --root . --no-tta

Fields are built from the held-out **test** images only (`data/processed/split.csv`, split ==
'test'; images under data/raw; for design choices, `--split val` builds them from the validation
images instead and `--split train` from the training images): each test cell is pasted once,
several per field, at one random magnification per field (0.5x to 2x, log-uniform), on a red-cell
background quilted from the same dataset's test images; some fields hold no white cell. A seed
gives the same fields in any process. Field mode runs with the scale it estimates itself
(`--given-scale` passes the true median cell diameter instead). The model runs with the inference
options its card records (as `wbcseg predict` does), but those given here.

Printed: detection precision and recall (IoU > 0.5); whole-cell Dice of the matched cells against
crop mode on the same cells, both on the test image in the field's tone and scale (the very pixels pasted,
with their own surroundings: the gap that the target is about) and at its native size; false
white cells per empty field; seconds per megapixel (scale estimate included); the scale estimates'
error; and the time of one 12-megapixel field. `--per-cell CSV` writes each matched cell's row
(its sample, its field's magnification and cell count, both Dice and their gap); `--false-cells DIR`
writes each false cell's row (its kind, place, size and colour) and an overlay of its field. Crop mode is the
test image segmented as a whole (model-size probabilities resized back, arg-max, central cell
kept, holes filled). Targets (issue 12): precision and recall >= 0.97, Dice within 0.01 of crop
mode, no cell on empty fields, 12 MP in under 30 s on 2 cores. Never tune on the test figures.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from wbcseg.data import read_image, read_mask
from wbcseg.fields import resolve_scale, segment_crops, segment_field
from wbcseg.fields_detect import colour_evidence, field_tone
from wbcseg.fields_scale import equivalent_diameter, training_cell_diameter
from wbcseg.metrics import dice
from wbcseg.overlay import overlay_cells
from wbcseg.params import ENGINES, PRECISIONS, TTA
from wbcseg.segmenter import Segmenter
from wbcseg.synthetic_fields import FieldScores, make_field, match_cells, rescale, toned

FIELD_SHAPE = (480, 640)
TIMING_SHAPE = (3000, 4000)


def samples(root: Path, split: str) -> pd.DataFrame:
    """Rows of split.csv in `split`, with the paths of their image and mask under data/raw."""
    table = pd.read_csv(root / "data" / "processed" / "split.csv")
    table = table[table["split"] == split].reset_index(drop=True)
    number = table["sample_id"].str.split("_").str[1]
    folder = root / "data" / "raw" / ("Dataset " + table["dataset"].astype(str))
    table["image"] = [str(f / f"{n}.bmp") for f, n in zip(folder, number)]
    table["mask"] = [str(f / f"{n}.png") for f, n in zip(folder, number)]
    return table


def load_segmenter(model_dir: str, root: Path, options: dict):
    """The model's segmenter with the inference options its card records, but those in `options`;
    a card without a scale (trained before cards recorded it) gets one measured on the training
    masks of the split, as training now records it."""
    segmenter = Segmenter.load(model_dir, **options)
    print(f"wbcseg: {segmenter.describe()}", *segmenter.notes, sep="\n")
    if "scale" not in segmenter.card:
        train = samples(root, "train")
        diameter = training_cell_diameter((read_mask(p) for p in train["mask"]), segmenter.input_size)
        segmenter.card["scale"] = {"cell_diameter_px": diameter}
        print(f"model card has no scale: measured {diameter:.1f} px (model input) on {len(train)} training masks")
    return segmenter


def build_fields(crops: dict[int, list], rng: np.random.Generator, empty_per_dataset: int, most_per_field: int):
    """Fields using each crop of each dataset once, several per field, plus empty ones; yields
    (dataset, field, index of the crop in its dataset's list for each source)."""
    for dataset, items in crops.items():
        pool = list(rng.permutation(len(items)))
        while pool:
            wanted = pool[: int(rng.integers(1, most_per_field + 1))]
            scale = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
            field = make_field([items[i] for i in wanted], items, FIELD_SHAPE, scale, rng)
            used = [wanted[s] for s in field.sources]
            if not used:
                continue  # nothing fitted at this scale: draw again
            pool = [i for i in pool if i not in used]
            yield dataset, field, used
        for _ in range(empty_per_dataset):
            scale = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
            yield dataset, make_field([], items, FIELD_SHAPE, scale, rng), []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/main", help="trained model directory (model.keras + model_card.json)")
    parser.add_argument("--root", default=".", help="project root holding data/processed/split.csv and data/raw")
    parser.add_argument(
        "--split", default="test", choices=("test", "val", "train"),
        help="images the fields are built from (val, or train for three times the cells, for design choices; the model "
        "trained on the train images, so their Dice flatters it, but finding cells and their scale is field mode's own work)",
    )
    parser.add_argument("--engine", choices=ENGINES, help="override the card's engine")
    parser.add_argument("--precision", choices=PRECISIONS, help="override the card's precision")
    parser.add_argument("--tta", choices=TTA, help="override the card's TTA (flips: 3 model calls per tile, dihedral: 8)")
    parser.add_argument("--no-tta", dest="tta", action="store_const", const="none", help="the same as --tta none")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--empty", type=int, default=5, help="empty fields per dataset")
    parser.add_argument("--cells-per-field", type=int, default=4)
    parser.add_argument("--given-scale", action="store_true", help="pass each field's true cell diameter instead of estimating it")
    parser.add_argument("--no-timing", action="store_true", help="skip the 12-megapixel field")
    parser.add_argument(
        "--false-cells", type=Path,
        help="also write, into this folder, false_cells.csv (a row per false cell: its field, kind, place and colour) "
        "and an overlay of each field that has one (field_NNN.png: found cells outlined, true cells in white)",
    )
    parser.add_argument("--per-cell", type=Path, help="also write a CSV with a row per matched cell (its sample, its field's magnification and cell count, both Dice)")
    args = parser.parse_args()
    root = Path(args.root)
    segmenter = load_segmenter(args.model, root, {"engine": args.engine, "precision": args.precision, "tta": args.tta})
    test = samples(root, args.split)
    crops = {d: [(read_image(r.image), read_mask(r.mask)) for r in rows.itertuples()] for d, rows in test.groupby("dataset")}
    sample_ids = {d: list(rows.sample_id) for d, rows in test.groupby("dataset")}

    crop_native = {}
    for dataset, items in crops.items():
        for i, (labels, _) in enumerate(segment_crops([image for image, _ in items], segmenter)):
            crop_native[dataset, i] = dice(labels > 0, items[i][1] > 0)

    rng = np.random.default_rng(args.seed)
    scores = {d: FieldScores() for d in crops}
    seconds = megapixels = 0.0
    scale_errors = []
    crop_scaled = {}
    cells, false_cells = [], []
    if args.false_cells:
        args.false_cells.mkdir(parents=True, exist_ok=True)
    for number, (dataset, field, used) in enumerate(build_fields(crops, rng, args.empty, args.cells_per_field)):
        for i in used:  # crop mode on the very pixels pasted: the test image in the field's tone and scale
            image, truth = crops[dataset][i]
            image, truth = rescale(toned(image, truth, field.tone), field.scale), rescale(truth, field.scale, labels=True)
            labels, _ = next(iter(segment_crops([image], segmenter)))
            crop_scaled[dataset, i] = dice(labels > 0, truth > 0)
        truth_diameter = np.median([equivalent_diameter((field.instances == k).sum()) for k in range(1, len(used) + 1)]) if used else None
        start = time.perf_counter()
        scale = resolve_scale(field.image, segmenter, cell_diameter=truth_diameter if args.given_scale else None)
        result = segment_field(field.image, segmenter, scale)
        seconds += time.perf_counter() - start
        megapixels += field.image.shape[0] * field.image.shape[1] / 1e6
        if used and result.scale is not None and result.scale.estimated:
            scale_errors.append(result.scale.cell_diameter / truth_diameter - 1)
        matches = match_cells(field.instances, result.instances)
        if args.false_cells:
            found = describe_false_cells(field, result, matches, truth_diameter or np.nan)
            false_cells += [{"dataset": dataset, "field": number, "magnification": field.scale, "cells in field": len(used), **row} for row in found]
            if found:
                save_field_overlay(args.false_cells / f"field_{number:03d}.png", field, result)
        # Sources name each cell's test image, so its field Dice meets its crop Dice.
        matched = len(scores[dataset].dice)
        scores[dataset].add(replace(field, sources=tuple((dataset, i) for i in used)), result.instances)
        # FieldScores.add scores the matches of match_cells in its order.
        for (_, p, _), (source, field_dice) in zip(matches, scores[dataset].dice[matched:]):
            cells.append({"dataset": dataset, "sample": sample_ids[dataset][source[1]],
                          "magnification": field.scale, "cells in field": len(used),
                          "confidence": result.cells[p - 1].measurements["mean_confidence"],
                          "field Dice": field_dice, "crop Dice, field scale": crop_scaled[source]})

    print(f"\nsynthetic fields of {FIELD_SHAPE[1]}x{FIELD_SHAPE[0]} from {len(test)} {args.split} images; scale {'given' if args.given_scale else 'estimated'}")
    rows = []
    for dataset, s in list(scores.items()) + [("all", pooled(scores.values()))]:
        rows.append({
            "dataset": dataset, "cells": s.true_positives + s.false_negatives, "precision": s.precision, "recall": s.recall,
            "field Dice": np.mean([d for _, d in s.dice]) if s.dice else np.nan,
            "crop Dice, field scale": np.mean([crop_scaled[src] for src, _ in s.dice]) if s.dice else np.nan,
            "crop Dice, native": np.mean([crop_native[src] for src, _ in s.dice]) if s.dice else np.nan,
            "empty fields": s.empty_fields, "false cells per empty field": s.false_cells_per_empty_field,
        })
    table = pd.DataFrame(rows)
    table["Dice gap"] = table["field Dice"] - table["crop Dice, field scale"]
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    print(f"time: {seconds / megapixels:.2f} s per megapixel over {megapixels:.1f} MP of fields (scale estimate included)")
    if scale_errors:
        errors = np.abs(scale_errors)
        print(
            f"scale estimate against the true median cell diameter: median error {np.median(errors):.1%}, worst {errors.max():.1%}, "
            f"{(errors > 0.2).sum()} of {len(errors)} fields off by more than 20 %"
        )
    if args.per_cell:
        per_cell = pd.DataFrame(cells)
        per_cell["Dice gap"] = per_cell["field Dice"] - per_cell["crop Dice, field scale"]
        per_cell.to_csv(args.per_cell, index=False, float_format="%.4f")
        print(f"per-cell Dice gap: median {per_cell['Dice gap'].median():.4f}; {(per_cell['Dice gap'] < -0.05).sum()} of {len(per_cell)} cells lose more than 0.05 (rows in {args.per_cell})")
    if args.false_cells:
        table = pd.DataFrame(false_cells)
        table.to_csv(args.false_cells / "false_cells.csv", index=False, float_format="%.3f")
        kinds = table.groupby(["dataset", "kind"]).size().to_string() if len(table) else "none"
        print(f"false cells by kind (rows and overlays in {args.false_cells}):\n{kinds}")
    if not args.no_timing:
        time_large_field(crops[max(crops)], segmenter, rng)


def describe_false_cells(field, result, matches: list, truth_diameter: float) -> list[dict]:
    """A row for each found cell that matches none of the true cells (`matches`, from
    `synthetic_fields.match_cells`): its kind ('spurious' when it overlaps
    no true cell, 'duplicate' when the true cell it overlaps most is matched by another found cell,
    'mis-segmented' when that true cell is matched by none), its place, size against the true
    median cell, best IoU, confidence, and its nucleus's darkness and blueness (as
    `fields_detect.Evidence`, on the field at native resolution)."""
    matched_true = {t for t, _, _ in matches}
    matched_found = {p for _, p, _ in matches}
    tone = field_tone(field.image)
    rows = []
    for cell in result.cells:
        if cell.id in matched_found:
            continue
        mine = result.instances == cell.id
        under = field.instances[mine]
        overlapped = np.bincount(under[under > 0]) if (under > 0).any() else np.zeros(1, int)
        best = int(overlapped.argmax())
        iou = overlapped[best] / np.count_nonzero(mine | (field.instances == best)) if best else 0.0
        kind = "spurious" if not best else "duplicate" if best in matched_true else "mis-segmented"
        diameter = equivalent_diameter(np.count_nonzero(mine))
        nucleus = mine & (result.classes == 2)
        darkness, blueness = colour_evidence(field.image[nucleus], tone) if nucleus.any() else (np.nan, np.nan)
        rows.append({
            "kind": kind, "x": cell.measurements["centroid_x"], "y": cell.measurements["centroid_y"],
            "size to true median": diameter / truth_diameter, "best IoU": iou,
            "diameter": diameter, "estimated diameter": result.scale.cell_diameter,
            "scale to true": result.scale.cell_diameter / truth_diameter,
            "confidence": cell.measurements["mean_confidence"], "darkness": darkness, "blueness": blueness,
        })
    return rows


def save_field_overlay(path: Path, field, result) -> None:
    """The field's overlay of found cells (`overlay.overlay_cells`) with the true cells' outlines in white."""
    out = overlay_cells(field.image, result.instances, result.classes)
    ids = field.instances.astype(np.float32)
    square = np.ones((3, 3), np.uint8)
    out[(field.instances > 0) & (cv2.erode(ids, square) != ids)] = 255
    cv2.imwrite(str(path), cv2.cvtColor(out, cv2.COLOR_RGB2BGR))


def pooled(all_scores) -> FieldScores:
    """The scores of several sets of fields together."""
    total = FieldScores()
    for s in all_scores:
        for name in ("true_positives", "false_positives", "false_negatives", "empty_fields", "cells_on_empty_fields"):
            setattr(total, name, getattr(total, name) + getattr(s, name))
        total.dice += s.dice
    return total


def time_large_field(items: list, segmenter, rng: np.random.Generator) -> None:
    """Time field mode, scale estimate included, on one 4000x3000 field of `items`' cells at 1x.
    The process's CPU time and the load average are printed too: on a shared machine the wall
    time alone says little about what 2 free cores would take."""
    field = make_field(items[:12], items, TIMING_SHAPE, 1.0, rng)
    load = os.getloadavg()[0]
    start, cpu = time.perf_counter(), time.process_time()
    result = segment_field(field.image, segmenter, resolve_scale(field.image, segmenter))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(
        f"{TIMING_SHAPE[1]}x{TIMING_SHAPE[0]} field ({TIMING_SHAPE[0] * TIMING_SHAPE[1] / 1e6:.0f} MP, {len(field.sources)} cells, "
        f"estimated cell diameter {result.scale.cell_diameter:.0f} px): {elapsed:.1f} s wall, {cpu:.1f} s CPU on "
        f"{os.cpu_count()} cores (load average {load:.1f} before), {len(result.cells)} cells found"
    )


if __name__ == "__main__":
    main()
