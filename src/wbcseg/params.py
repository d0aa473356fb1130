"""params.yaml: load it, check it, and resolve one variant into the settings of one run.

Every check raises ParamsError with the dotted name of the offending key, so that a typo in
`dvc exp run -S ...` stops the stage before it touches its outputs.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml

from wbcseg import WbcsegError
from wbcseg.data import DATASETS, TASK_CLASSES

LOSSES = ("dice_ce", "focal_dice", "focal", "tversky")
#: Inference precisions (evaluate.precision, `wbcseg predict --precision`): see model.resolve_precision.
PRECISIONS = ("auto", "float32", "bfloat16")
#: Inference engines (evaluate.engine, `wbcseg predict --engine`): see engine.resolve_engine.
ENGINES = ("auto", "tensorflow", "openvino")
MIN_INPUT_SIZE = 96
SIZE_MULTIPLE = 32


class ParamsError(WbcsegError):
    """A parameter is missing or has a value the pipeline cannot use."""


@dataclass(frozen=True)
class RunConfig:
    """Everything one training-and-evaluation run needs: `train` merged with one variant."""

    variant: str
    task: str
    datasets: tuple[int, ...]
    test_datasets: tuple[int, ...]
    epochs: int
    batch_size: int
    learning_rate: float
    loss: str
    augment: bool
    seed: int
    backbone: str
    encoder_weights: str | None
    input_size: int

    @property
    def classes(self) -> tuple[str, ...]:
        return TASK_CLASSES[self.task]

    def to_dict(self) -> dict:
        out = asdict(self)
        out["datasets"] = list(self.datasets)
        out["test_datasets"] = list(self.test_datasets)
        return out


def load_params(path: str | os.PathLike = "params.yaml", check: bool = True) -> dict:
    """Read params.yaml and, unless `check` is false, check every parameter."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: parameter file not found")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: expected a mapping of parameter groups")
    if check:
        check_params(params)
    return params


def _get(params: dict, dotted: str):
    node = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ParamsError(f"{dotted}: missing from params.yaml")
        node = node[part]
    return node


def _require(condition: bool, key: str, problem: str) -> None:
    if not condition:
        raise ParamsError(f"{key}: {problem}")


def _check_fraction(value, key: str) -> None:
    _require(isinstance(value, (int, float)) and 0 < value < 1, key, f"must be a fraction between 0 and 1, got {value!r}")


def check_input_size(size, key: str = "model.input_size") -> None:
    _require(
        isinstance(size, int) and not isinstance(size, bool) and size >= MIN_INPUT_SIZE and size % SIZE_MULTIPLE == 0,
        key,
        f"the InceptionV3 U-Net needs a whole number >= {MIN_INPUT_SIZE} divisible by {SIZE_MULTIPLE}, got {size!r}",
    )


def check_backbone(name, key: str = "model.backbone") -> None:
    from wbcseg.model import available_backbones

    known = available_backbones()
    _require(name in known, key, f"unknown backbone {name!r}; segmentation_models knows {', '.join(sorted(known))}")


def check_encoder_weights(value, key: str = "model.encoder_weights") -> None:
    if value is None or value == "imagenet":
        return
    _require(isinstance(value, str), key, f"must be null, 'imagenet' or a weights-file path, got {value!r}")
    _require(Path(value).expanduser().is_file(), key, f"weights file {value} does not exist")


def _check_run(run: dict, key: str) -> None:
    _require(run["task"] in TASK_CLASSES, f"{key}.task", f"must be one of {sorted(TASK_CLASSES)}, got {run['task']!r}")
    for name in ("datasets", "test_datasets"):
        value = run[name]
        if name == "test_datasets" and value is None:
            continue
        _require(
            isinstance(value, list) and value and all(d in DATASETS for d in value) and len(set(value)) == len(value),
            f"{key}.{name}",
            f"must be a non-empty list drawn from {list(DATASETS)}, got {value!r}",
        )
    for name in ("epochs", "batch_size", "seed"):
        value = run[name]
        minimum = 0 if name == "seed" else 1
        _require(
            isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
            f"{key}.{name}",
            f"must be a whole number >= {minimum}, got {value!r}",
        )
    _require(
        isinstance(run["learning_rate"], (int, float)) and run["learning_rate"] > 0,
        f"{key}.learning_rate",
        f"must be a positive number, got {run['learning_rate']!r}",
    )
    _require(run["loss"] in LOSSES, f"{key}.loss", f"must be one of {list(LOSSES)}, got {run['loss']!r}")
    _require(isinstance(run["augment"], bool), f"{key}.augment", f"must be true or false, got {run['augment']!r}")


def check_params(params: dict) -> None:
    """Raise ParamsError for the first parameter the pipeline cannot use."""
    _check_fraction(_get(params, "split.test_fraction"), "split.test_fraction")
    _check_fraction(_get(params, "split.val_fraction"), "split.val_fraction")
    _require(
        _get(params, "split.test_fraction") + _get(params, "split.val_fraction") < 0.9,
        "split",
        "test_fraction + val_fraction leaves too few training images",
    )
    cap = _get(params, "data.max_images_per_dataset")
    _require(cap is None or (isinstance(cap, int) and cap >= 10), "data.max_images_per_dataset", f"must be null or >= 10, got {cap!r}")
    check_input_size(_get(params, "model.input_size"))
    check_backbone(_get(params, "model.backbone"))
    check_encoder_weights(_get(params, "model.encoder_weights"))
    for name in ("overlays",):
        value = _get(params, f"evaluate.{name}")
        _require(isinstance(value, int) and value >= 0, f"evaluate.{name}", f"must be a whole number >= 0, got {value!r}")
    for name in ("postprocess", "tta"):
        value = _get(params, f"evaluate.{name}")
        _require(isinstance(value, bool), f"evaluate.{name}", f"must be true or false, got {value!r}")
    precision = _get(params, "evaluate.precision")
    _require(precision in PRECISIONS, "evaluate.precision", f"must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    engine = _get(params, "evaluate.engine")
    _require(engine in ENGINES, "evaluate.engine", f"must be one of {', '.join(ENGINES)}, got {engine!r}")
    folds = _get(params, "crossval.folds")
    _require(
        isinstance(folds, int) and not isinstance(folds, bool) and (folds == 0 or folds >= 2),
        "crossval.folds", f"must be 0 (not run) or a whole number >= 2, got {folds!r}",
    )
    _require(
        _get(params, "crossval.variant") in (_get(params, "variants") or {}),
        "crossval.variant", f"must name a variant of params.yaml, got {_get(params, 'crossval.variant')!r}",
    )
    train = _get(params, "train")
    run_keys = {f.name for f in fields(RunConfig)} - {"variant", "backbone", "encoder_weights", "input_size"}
    unknown = set(train) - run_keys
    _require(not unknown, "train", f"unknown keys {sorted(unknown)}; known: {sorted(run_keys)}")
    missing = run_keys - set(train)
    _require(not missing, "train", f"missing keys {sorted(missing)}")
    _check_run(train, "train")
    variants = _get(params, "variants")
    _require(isinstance(variants, dict) and "main" in variants, "variants", "must be a mapping that includes 'main'")
    for name, overrides in variants.items():
        overrides = overrides or {}
        _require(isinstance(overrides, dict), f"variants.{name}", "must be a mapping of train keys to override")
        unknown = set(overrides) - run_keys
        _require(not unknown, f"variants.{name}", f"unknown keys {sorted(unknown)}; a variant overrides train keys only")
        _check_run({**train, **overrides}, f"variants.{name}")


def run_config(params: dict, variant: str = "main") -> RunConfig:
    """The settings of one variant: `train`, overridden by `variants.<variant>`, plus `model`."""
    variants = params["variants"]
    if variant not in variants:
        raise ParamsError(f"variants.{variant}: no such variant; params.yaml defines {sorted(variants)}")
    run = {**params["train"], **(variants[variant] or {})}
    model = params["model"]
    return RunConfig(
        variant=variant,
        task=run["task"],
        datasets=tuple(run["datasets"]),
        test_datasets=tuple(run["test_datasets"] or run["datasets"]),
        epochs=run["epochs"],
        batch_size=run["batch_size"],
        learning_rate=float(run["learning_rate"]),
        loss=run["loss"],
        augment=run["augment"],
        seed=run["seed"],
        backbone=model["backbone"],
        encoder_weights=model["encoder_weights"],
        input_size=model["input_size"],
    )
