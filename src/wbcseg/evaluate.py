"""Score a model on a split: the Segmenter's predictions at native resolution, per image and per
target (`wbcseg.scoring`), and the inference options compared on validation images."""

from __future__ import annotations

import numpy as np
import pandas as pd

from wbcseg.engine import resolve_engine, resolve_precision
from wbcseg.params import TTA
from wbcseg.postprocess import keep_central_cell
from wbcseg.scoring import evaluate_labels, read_images, summarize
from wbcseg.segmenter import DEFAULT_BATCH_SIZE, Segmenter


def predict_labels(segmenter, samples: pd.DataFrame, batch_size: int = DEFAULT_BATCH_SIZE) -> list[np.ndarray]:
    """The label maps a Segmenter (anything with `segment_many`) gives the samples' images, at
    native resolution, in order."""
    return [result.labels for result in segmenter.segment_many(read_images(samples), batch_size=batch_size)]


def evaluate_images(segmenter, samples: pd.DataFrame, batch_size: int = DEFAULT_BATCH_SIZE) -> pd.DataFrame:
    """Per-image, per-target metrics of a Segmenter on `samples`, predicted and scored at native resolution."""
    return evaluate_labels(predict_labels(segmenter, samples, batch_size), samples, segmenter.task)


# --------------------------------------------------------------------------- inference options

DEFAULT_OPTIONS = tuple({"tta": tta, "postprocess": postprocess} for tta in TTA for postprocess in (False, True))


def compare_inference_options(
    model, card: dict, samples: pd.DataFrame, options=DEFAULT_OPTIONS, runs=(("tensorflow", "float32"),), batch_size: int = DEFAULT_BATCH_SIZE
) -> pd.DataFrame:
    """Mean Dice per target (columns) for each run x inference option x dataset (rows), on
    `samples` (meant for the validation split: choosing options on the test split would leak it).
    `runs` are (engine, precision) pairs as `Segmenter` takes them ('auto' is resolved).

    The network runs once per run and TTA setting; post-processing is applied to those same
    predictions with `postprocess.keep_central_cell`, as the Segmenter does, instead of
    predicting again.
    """
    images = read_images(samples)
    tables = {}
    resolved = list(dict.fromkeys((resolve_engine(engine), resolve_precision(precision)) for engine, precision in runs))
    for engine, precision in resolved:
        for tta in dict.fromkeys(option["tta"] for option in options):
            segmenter = Segmenter(model, card, tta=tta, postprocess=False, precision=precision, engine=engine)
            results = list(segmenter.segment_many(images, batch_size=batch_size))
            for option in (option for option in options if option["tta"] == tta):
                labels = [
                    keep_central_cell(result.labels, result.probabilities) if option["postprocess"] else result.labels
                    for result in results
                ]
                summary = summarize(evaluate_labels(labels, samples, segmenter.task))
                tables[engine, precision, tta, option["postprocess"]] = summary.assign(
                    engine=engine, precision=precision, tta=tta, postprocess=option["postprocess"]
                )
    table = pd.concat([tables[(*run, option["tta"], option["postprocess"])] for run in resolved for option in options], ignore_index=True)
    return table.pivot_table(
        index=["engine", "precision", "tta", "postprocess", "dataset"], columns="target", values="dice_mean", sort=False
    ).rename_axis(columns=None).reset_index()
