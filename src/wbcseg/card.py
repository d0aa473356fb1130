"""The model card: the one contract of a trained model directory, free of TensorFlow.

A model directory holds `model.keras` (the network, RGB 0-255 in, class probabilities out) and
`model_card.json`: what the model is (task, classes, input size, backbone, normalisation), how it
was trained (the run's parameters, data, validation metrics), and, once the evaluate stage has
run, `test_metrics.json` beside it: the held-out metrics and the inference options they were
measured with (TTA, post-processing, precision, engine). The card also records the scale of the
training images (`scale.cell_diameter_px`, the median white-cell diameter at model size), which
field mode brings a field to, and, for a model trained with crops zoomed in on small cells,
`min_cell_diameter`, which the Segmenter zooms to as well. Training writes the card, evaluation
writes the test metrics (a DVC stage cannot rewrite another stage's output), and the Segmenter and
`wbcseg predict` read both through `read_card`, so they apply the options the metrics hold for.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

from wbcseg.atomic import write_text
from wbcseg.classes import TASK_CLASSES
from wbcseg.data import DATASET_COMMIT, DATASET_REPO, sha256_file
from wbcseg.errors import ModelError
from wbcseg.params import ENGINES, MIN_INPUT_SIZE, PRECISIONS, SIZE_MULTIPLE, tta_setting

MODEL_FILE = "model.keras"
CARD_FILE = "model_card.json"
TEST_METRICS_FILE = "test_metrics.json"
CARD_VERSION = 1
NORMALISATION = "RGB uint8 0-255 in; scaled inside the model by x / 127.5 - 1 (InceptionV3)"
REQUIRED_KEYS = ("task", "classes", "input_size", "backbone", "normalisation")
INFERENCE_KEYS = ("tta", "postprocess", "precision", "engine")
#: What a card that records no inference options means: the plain model call.
PLAIN_INFERENCE = {"tta": "none", "postprocess": False, "precision": "float32", "engine": "tensorflow"}


def base_model(model_dir: str | os.PathLike) -> dict:
    """What a fine-tuned model started from: the model directory, the SHA-256 of its model file
    and the datasets it was trained on."""
    card = read_card(model_dir)
    return {"model_dir": str(model_dir), "sha256": sha256_file(Path(model_dir) / MODEL_FILE), "datasets": card.get("data", {}).get("datasets")}


def make_card(config, val_metrics: dict | None = None, extra: dict | None = None, cell_diameter_px: float | None = None) -> dict:
    """The card of a model trained with `config` (a params.RunConfig); `init_from` says what a
    fine-tuned one started from (`base_model`); `cell_diameter_px` is the median white-cell diameter
    of its training images at model size (`fields_scale.training_cell_diameter`)."""
    scale = {} if cell_diameter_px is None else {"scale": {"cell_diameter_px": round(float(cell_diameter_px), 2)}}
    zoom = {} if config.min_cell_diameter is None else {"min_cell_diameter": config.min_cell_diameter}
    return {
        "card_version": CARD_VERSION,
        "task": config.task,
        "classes": list(config.classes),
        "input_size": config.input_size,
        "normalisation": NORMALISATION,
        "backbone": config.backbone,
        "encoder_weights": config.encoder_weights,
        "train_params": config.to_dict(),
        "data": {"source": f"{DATASET_REPO}@{DATASET_COMMIT}", "commit": DATASET_COMMIT, "datasets": list(config.datasets)},
        "val_metrics": val_metrics or {},
        "init_from": base_model(config.init_from) if config.init_from else None,
        **scale,
        **zoom,
        **(extra or {}),
    }


def write_json(path: str | os.PathLike, content: dict) -> Path:
    """Write `content` as indented JSON, atomically."""
    return write_text(path, json.dumps(content, indent=2, default=str))


def check_card(card, path) -> dict:
    """The card itself, or ModelError naming `path` and the first key that is missing or wrong."""
    if not isinstance(card, dict):
        raise ModelError(f"{path}: a model card must be a JSON object")
    missing = [key for key in REQUIRED_KEYS if key not in card]
    if missing:
        raise ModelError(f"{path}: model card lacks {missing}")
    task, size = card["task"], card["input_size"]
    if task not in TASK_CLASSES or list(card["classes"]) != list(TASK_CLASSES[task]):
        raise ModelError(f"{path}: task {task!r} and classes {card['classes']} do not agree")
    if not (isinstance(size, int) and not isinstance(size, bool) and size >= MIN_INPUT_SIZE and size % SIZE_MULTIPLE == 0):
        raise ModelError(f"{path}: input_size must be a whole number >= {MIN_INPUT_SIZE} divisible by {SIZE_MULTIPLE}, got {size!r}")
    if not isinstance(card["backbone"], str):
        raise ModelError(f"{path}: backbone must be a name, got {card['backbone']!r}")
    zoom = card.get("min_cell_diameter")
    if zoom is not None and (isinstance(zoom, bool) or not isinstance(zoom, int | float) or not 0 < zoom < size):
        raise ModelError(f"{path}: min_cell_diameter must be a number of input pixels between 0 and input_size ({size}), got {zoom!r}")
    return card


def _read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: {what} is not valid JSON ({exc})") from exc
    except OSError as exc:
        raise ModelError(f"{path}: {what} cannot be read ({exc.strerror})") from exc


def read_card(model_dir: str | os.PathLike) -> dict:
    """The card of a model directory, checked, with `test_metrics` and `inference` when the
    evaluate stage has written them; ModelError naming the file and the problem otherwise."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelError(f"{model_dir}: model directory not found (train one with `dvc repro`, or `dvc pull` one)")
    card_path = model_dir / CARD_FILE
    if not card_path.is_file():
        raise ModelError(f"{model_dir}: no {CARD_FILE}; this is not a complete wbcseg model directory")
    card = check_card(_read_json(card_path, "the model card"), card_path)
    metrics_path = model_dir / TEST_METRICS_FILE
    if metrics_path.is_file():
        metrics = _read_json(metrics_path, "the test metrics")
        if not isinstance(metrics, dict):
            raise ModelError(f"{metrics_path}: the test metrics must be a JSON object")
        card["test_metrics"] = metrics
        if "inference" in metrics:
            card["inference"] = check_inference(metrics["inference"], metrics_path)
    return card


def read_model_dir(model_dir: str | os.PathLike) -> dict:
    """`read_card`, and ModelError unless the model file beside the card is there and whole; what
    can be checked without loading the model, so a command can refuse a bad directory at once."""
    card = read_card(model_dir)
    path = Path(model_dir) / MODEL_FILE
    if not path.is_file():
        raise ModelError(f"{Path(model_dir)}: no {MODEL_FILE} beside {CARD_FILE}")
    if not zipfile.is_zipfile(path):  # a .keras file is a zip archive; Keras says "File not found" otherwise
        raise ModelError(f"{path}: damaged or truncated (not a complete .keras archive); restore it with `dvc checkout` or retrain")
    return card


def check_inference(options, path) -> dict:
    """Recorded inference options, checked: ModelError naming `path` where one is unusable."""
    if not isinstance(options, dict):
        raise ModelError(f"{path}: inference must be an object of {', '.join(INFERENCE_KEYS)}")
    if "postprocess" in options and not isinstance(options["postprocess"], bool):
        raise ModelError(f"{path}: inference.postprocess must be true or false, got {options['postprocess']!r}")
    if "tta" in options:
        try:
            tta_setting(options["tta"])
        except ValueError as error:
            raise ModelError(f"{path}: inference.tta: {error}") from None
    for key, choices in (("precision", PRECISIONS), ("engine", ENGINES)):
        if key in options and options[key] not in choices:
            raise ModelError(f"{path}: inference.{key} must be one of {', '.join(choices)}, got {options[key]!r}")
    return options


def recorded_inference(card: dict) -> dict:
    """The inference options a card records (those its test metrics were measured with), each
    one missing taken from PLAIN_INFERENCE."""
    recorded = card.get("inference") or {}
    options = {key: recorded.get(key, default) for key, default in PLAIN_INFERENCE.items()}
    return {**options, "tta": tta_setting(options["tta"])}


def write_test_metrics(model_dir: str | os.PathLike, metrics: dict, inference: dict) -> Path:
    """test_metrics.json beside the model: held-out metrics and the inference options behind them."""
    return write_json(Path(model_dir) / TEST_METRICS_FILE, {**metrics, "inference": check_inference(inference, TEST_METRICS_FILE)})


def model_cell_diameter(card: dict, source: str | os.PathLike = CARD_FILE) -> float:
    """The median white-cell diameter of the model's training images in model-input pixels, as the
    card records it; ModelError naming `source` when the model cannot run field mode (a binary
    model has no nucleus class to find cells by; cards written before the scale was recorded lack it)."""
    if card.get("task") != "tissue":
        raise ModelError(f"{source}: field mode finds white cells by their nucleus; this {card.get('task')} model has none (use a tissue model)")
    value = (card.get("scale") or {}).get("cell_diameter_px")
    if value is None:
        raise ModelError(
            f"{source}: records no scale.cell_diameter_px (the training cells' diameter), which field and auto modes need; "
            "the model was trained before cards recorded it: retrain it (`dvc repro train@main`), or use --mode crop"
        )
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ModelError(f"{source}: scale.cell_diameter_px must be a positive number of pixels, got {value!r}")
    return float(value)
