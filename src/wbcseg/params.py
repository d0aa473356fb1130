"""params.yaml: load it, check every key, and resolve one variant into the settings of one run.

Every check raises ParamsError naming the dotted key, so that a typo in `dvc exp run -S ...` stops
the pipeline (the `check` stage of dvc.yaml, before any stage whose outputs DVC would delete) with
one line. Nothing here imports TensorFlow: the backbones that segmentation_models knows are listed
below, and a test compares the list with the library's.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from wbcseg.classes import TASK_CLASSES, TASK_TARGETS
from wbcseg.data import DATASETS, MASK_CONVENTIONS, ExtraDataset, check_dataset_name
from wbcseg.errors import ParamsError
from wbcseg.paths import stage_paths

LOSSES = ("dice_ce", "focal_dice", "focal", "tversky")
SCHEDULES = ("constant", "cosine")
#: Augmentation levels (train.augment): see wbcseg.augment.
AUGMENTATIONS = ("none", "basic", "stain", "capture", "smear")
#: Training precisions (train.precision): see train.resolve_training_precision.
TRAINING_PRECISIONS = ("auto", "float32", "mixed_bfloat16")
#: Inference precisions (evaluate.precision, `wbcseg predict --precision`): see engine.resolve_precision.
PRECISIONS = ("auto", "float32", "bfloat16")
#: Inference engines (evaluate.engine, `wbcseg predict --engine`): see engine.resolve_engine.
ENGINES = ("auto", "tensorflow", "openvino")
#: Test-time augmentation (evaluate.tta, `wbcseg predict --tta`): the views whose probabilities are
#: averaged. none: the image as it is; flips: and flipped either way (3 views); dihedral: its 4
#: rotations by 90 degrees, each also mirrored (8 views). See segmenter.TTA_VIEWS.
TTA = ("none", "flips", "dihedral")
#: How training spreads over devices (train.distribute): see network.distribution_strategy.
DISTRIBUTE = ("none", "mirrored")
#: segmentation_models 1.0.1's backbones (`sm.Backbones.models_names()`; tests/test_params.py checks).
BACKBONES = (
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "seresnet18", "seresnet34", "seresnet50",
    "seresnet101", "seresnet152", "seresnext50", "seresnext101", "senet154", "resnext50", "resnext101",
    "vgg16", "vgg19", "densenet121", "densenet169", "densenet201", "inceptionresnetv2", "inceptionv3",
    "mobilenet", "mobilenetv2", "efficientnetb0", "efficientnetb1", "efficientnetb2", "efficientnetb3",
    "efficientnetb4", "efficientnetb5", "efficientnetb6", "efficientnetb7",
)
MIN_INPUT_SIZE = 96
SIZE_MULTIPLE = 32


# --------------------------------------------------------------------------- value checks
# Each returns None for a good value, else what is wrong with it.


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _whole(minimum: int):
    def check(value):
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= minimum):
            return f"must be a whole number >= {minimum}, got {value!r}"

    return check


def _positive(value):
    if not (_is_number(value) and value > 0):
        return f"must be a positive number, got {value!r}"


def _fraction(value):
    if not (_is_number(value) and 0 < value < 1):
        return f"must be a fraction between 0 and 1, got {value!r}"


def _boolean(value):
    if not isinstance(value, bool):
        return f"must be true or false, got {value!r}"


def _one_of(choices):
    def check(value):
        if value not in choices:
            return f"must be one of {', '.join(map(str, choices))}, got {value!r}"

    return check


def _tta(value):
    if not isinstance(value, bool) and value not in TTA:
        return f"must be one of {', '.join(TTA)}, got {value!r}"


def tta_setting(value) -> str:
    """A TTA setting as one of TTA; true and false, as older cards and params record it, are
    'flips' and 'none'. ValueError for anything else."""
    if problem := _tta(value):
        raise ValueError(f"TTA {problem}")
    if isinstance(value, bool):
        return "flips" if value else "none"
    return value


def _optional(check):
    return lambda value: None if value is None else check(value)


def _text(value):
    if not (isinstance(value, str) and value):
        return f"must be a non-empty string, got {value!r}"


def _input_size(value):
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= MIN_INPUT_SIZE and value % SIZE_MULTIPLE == 0):
        return f"the InceptionV3 U-Net needs a whole number >= {MIN_INPUT_SIZE} divisible by {SIZE_MULTIPLE}, got {value!r}"


def check_input_size(size, key: str = "model.input_size") -> None:
    """ParamsError naming `key` unless `size` is an input side the U-Net can take."""
    problem = _input_size(size)
    if problem:
        raise ParamsError(f"{key}: {problem}")


def _folds(value):
    if _whole(0)(value) or value == 1:
        return f"must be 0 (not run) or a whole number >= 2, got {value!r}"


def _encoder_weights(value):
    if value is None or value == "imagenet":
        return None
    if not isinstance(value, str):
        return f"must be null, 'imagenet' or a weights-file path, got {value!r}"
    if not Path(value).expanduser().is_file():
        return f"weights file {value} does not exist"


def _targets(value):
    if not isinstance(value, dict):
        return f"must map models to {{dataset label: {{target: minimum Dice}}}}, got {value!r}"
    for model, by_dataset in value.items():
        if not isinstance(by_dataset, dict):
            return f"{model}: must map dataset labels (d1, d2, a lab dataset's name) to {{target: minimum Dice}}"
        for dataset, by_target in by_dataset.items():
            if not isinstance(by_target, dict):
                return f"{model}.{dataset}: must be a dataset label (d1, d2, a lab dataset's name) mapped to {{target: minimum Dice}}"
            for target, required in by_target.items():
                if target not in TASK_TARGETS["tissue"] or not (_is_number(required) and 0 < required <= 1):
                    return f"{model}.{dataset}.{target}: must be a target ({', '.join(TASK_TARGETS['tissue'])}) with a Dice in (0, 1], got {required!r}"


def _dataset(value) -> bool:
    """A public dataset's number, or a name a lab dataset may have (whether one has it is checked later)."""
    return value in DATASETS if isinstance(value, int) else isinstance(value, str) and not check_dataset_name(value)


def _datasets(value):
    if not (isinstance(value, list) and value and all(map(_dataset, value)) and len(set(value)) == len(value)):
        return f"must be a non-empty list of distinct datasets ({', '.join(map(str, DATASETS))} or names in data.extra_datasets), got {value!r}"


def _mask_template(value):
    if not (isinstance(value, str) and "{stem}" in value):
        return f"must be a file name template with {{stem}} (the image's name without extension), e.g. 'masks/{{stem}}.png', got {value!r}"


#: The keys of one entry of data.extra_datasets (all optional: ExtraDataset has the defaults).
EXTRA_DATASET = {
    "images": _text,
    "masks": _mask_template,
    "mask_values": _one_of(list(MASK_CONVENTIONS)),
    "pixel_size": _optional(_positive),
}


def _extra_datasets(value):
    if not isinstance(value, dict):
        return f"must map dataset names to {{{', '.join(EXTRA_DATASET)}}}, got {value!r}"
    for name, spec in value.items():
        problem = check_dataset_name(name)
        if problem:
            return problem
        spec = spec or {}
        if not isinstance(spec, dict):
            return f"{name}: must be a mapping of {', '.join(EXTRA_DATASET)}, got {spec!r}"
        for key, item in spec.items():
            problem = f"unknown key; a dataset knows {', '.join(EXTRA_DATASET)}" if key not in EXTRA_DATASET else EXTRA_DATASET[key](item)
            if problem:
                return f"{name}.{key}: {problem}"


#: Every group and key of params.yaml with its check. `train` keys are what a variant may override.
SCHEMA = {
    "data": {"source": _optional(_text), "max_images_per_dataset": _optional(_whole(10)), "extra_datasets": _extra_datasets},
    "split": {"seed": _whole(0), "test_fraction": _fraction, "val_fraction": _fraction},
    "model": {"backbone": _one_of(BACKBONES), "encoder_weights": _encoder_weights, "input_size": _input_size, "min_cell_diameter": _optional(_positive)},
    "train": {
        "task": _one_of(sorted(TASK_CLASSES)),
        "datasets": _datasets,
        "test_datasets": _optional(_datasets),
        "epochs": _whole(1),
        "batch_size": _whole(1),
        "learning_rate": _positive,
        "schedule": _one_of(SCHEDULES),
        "warmup_epochs": _whole(0),
        "loss": _one_of(LOSSES),
        "augment": _one_of(AUGMENTATIONS),
        "balance": _boolean,
        "precision": _one_of(TRAINING_PRECISIONS),
        "deterministic": _boolean,
        "seed": _whole(0),
        "distribute": _one_of(DISTRIBUTE),
    },
    "evaluate": {
        "overlays": _whole(0),
        "postprocess": _boolean,
        "tta": _tta,
        "precision": _one_of(PRECISIONS),
        "engine": _one_of(ENGINES),
    },
    "compare": {"targets": _targets},
    "crossval": {"folds": _folds, "variant": _text, "fold": _optional(_whole(0))},
    "variants": None,  # checked by _check_models
    "finetuned": None,  # checked by _check_models
}
#: What a `finetuned` entry holds: the model directory it starts from, and any train key.
FINETUNED = {"init_from": _text, **SCHEMA["train"]}


def _check_group(values, checks: dict, prefix: str, complete: bool = True) -> None:
    if not isinstance(values, dict):
        raise ParamsError(f"{prefix}: must be a mapping of keys to values, got {values!r}")
    unknown = sorted(set(values) - set(checks))
    if unknown:
        raise ParamsError(f"{prefix}.{unknown[0]}: unknown key; {prefix} knows {', '.join(checks)}")
    missing = [key for key in checks if key not in values] if complete else []
    if missing:
        raise ParamsError(f"{prefix}.{missing[0]}: missing from params.yaml")
    for key, value in values.items():
        problem = checks[key](value)
        if problem:
            raise ParamsError(f"{prefix}.{key}: {problem}")


def _check_models(params: dict) -> None:
    variants, finetuned = params["variants"], params["finetuned"]
    if not (isinstance(variants, dict) and "main" in variants):
        raise ParamsError("variants: must be a mapping of variant names that includes 'main'")
    if not isinstance(finetuned, dict):
        raise ParamsError(f"finetuned: must be a mapping of model names to {{init_from: MODEL_DIR, train keys}}, got {finetuned!r}")
    for group, checks in (("variants", SCHEMA["train"]), ("finetuned", FINETUNED)):
        for name, overrides in params[group].items():
            overrides = overrides or {}
            if not isinstance(overrides, dict):
                raise ParamsError(f"{group}.{name}: must be a mapping of train keys to override")
            _check_group(overrides, checks, f"{group}.{name}", complete=False)
            if group == "finetuned" and "init_from" not in overrides:
                raise ParamsError(f"finetuned.{name}.init_from: missing; name the model directory to start from, e.g. models/main")
            run = {**params["train"], **overrides}
            if run["warmup_epochs"] >= run["epochs"]:
                raise ParamsError(f"{group}.{name}: warmup_epochs ({run['warmup_epochs']}) must be fewer than epochs ({run['epochs']})")
    both = sorted(set(variants) & set(finetuned))
    if both:
        raise ParamsError(f"finetuned.{both[0]}: a variant has that name too; a model's name is its folder in models/ and reports/")


def _check_datasets_known(params: dict) -> None:
    """Every dataset named anywhere is a public one or in data.extra_datasets, and every model a
    quality target names is a variant or a fine-tuned model."""
    names = set(params["data"]["extra_datasets"])
    labels = {f"d{d}" for d in DATASETS} | names
    runs = [("train", params["train"])] + [(f"{g}.{n}", o or {}) for g in ("variants", "finetuned") for n, o in params[g].items()]
    for prefix, run in runs:
        for key in ("datasets", "test_datasets"):
            unknown = [d for d in run.get(key) or [] if isinstance(d, str) and d not in names]
            if unknown:
                raise ParamsError(f"{prefix}.{key}: {unknown[0]!r} is not a dataset of data.extra_datasets ({', '.join(names) or 'none defined'})")
    models = set(params["variants"]) | set(params["finetuned"])
    for model, by_dataset in params["compare"]["targets"].items():
        if model not in models:
            raise ParamsError(f"compare.targets.{model}: must name a variant or a fine-tuned model of params.yaml")
        for label in by_dataset:
            if label not in labels:
                raise ParamsError(f"compare.targets.{model}: {label!r} must be a dataset label ({', '.join(sorted(labels))})")


def check_params(params) -> None:
    """Raise ParamsError for the first parameter the pipeline cannot use."""
    if not isinstance(params, dict):
        raise ParamsError("params.yaml: expected a mapping of parameter groups")
    unknown = sorted(set(params) - set(SCHEMA))
    if unknown:
        raise ParamsError(f"{unknown[0]}: unknown parameter group; params.yaml has {', '.join(SCHEMA)}")
    for group, checks in SCHEMA.items():
        if group not in params:
            raise ParamsError(f"{group}: missing from params.yaml")
        if checks is not None:
            _check_group(params[group], checks, group)
    model = params["model"]
    if model["min_cell_diameter"] is not None and model["min_cell_diameter"] >= model["input_size"]:
        raise ParamsError(f"model.min_cell_diameter: must be below model.input_size ({model['input_size']}), got {model['min_cell_diameter']}")
    if params["split"]["test_fraction"] + params["split"]["val_fraction"] >= 0.9:
        raise ParamsError("split: test_fraction + val_fraction leaves too few training images")
    _check_models(params)
    _check_datasets_known(params)
    crossval = params["crossval"]
    if crossval["variant"] not in params["variants"]:
        raise ParamsError(f"crossval.variant: must name a variant of params.yaml, got {crossval['variant']!r}")
    if crossval["fold"] is not None and crossval["fold"] >= crossval["folds"]:
        raise ParamsError(f"crossval.fold: must be below crossval.folds ({crossval['folds']}), got {crossval['fold']}")


def load_params(path: str | os.PathLike = "params.yaml") -> dict:
    """Read params.yaml and check every parameter."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: parameter file not found")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from exc
    check_params(params)
    return params


# --------------------------------------------------------------------------- one run


@dataclass(frozen=True)
class RunConfig:
    """Everything one training-and-evaluation run needs: `train` merged with one variant (or one
    `finetuned` model, which adds `init_from`), and `model`."""

    variant: str
    task: str
    datasets: tuple[int | str, ...]
    test_datasets: tuple[int | str, ...]
    epochs: int
    batch_size: int
    learning_rate: float
    schedule: str
    warmup_epochs: int
    loss: str
    augment: str
    balance: bool
    precision: str
    deterministic: bool
    seed: int
    backbone: str
    encoder_weights: str | None
    input_size: int
    distribute: str = "none"
    init_from: str | None = None
    min_cell_diameter: float | None = None

    @property
    def classes(self) -> tuple[str, ...]:
        return TASK_CLASSES[self.task]

    def to_dict(self) -> dict:
        out = asdict(self)
        out["datasets"] = list(self.datasets)
        out["test_datasets"] = list(self.test_datasets)
        return out


def run_config(params: dict, variant: str = "main") -> RunConfig:
    """The settings of one model: `train`, overridden by `variants.<variant>` (or
    `finetuned.<variant>`), plus `model`."""
    models = {**params["variants"], **params["finetuned"]}
    if variant not in models:
        raise ParamsError(f"variants.{variant}: no such variant; params.yaml defines {', '.join(models)}")
    run = {**params["train"], **(models[variant] or {})}
    model = params["model"]
    return RunConfig(
        variant=variant,
        task=run["task"],
        datasets=tuple(run["datasets"]),
        test_datasets=tuple(run["test_datasets"] or run["datasets"]),
        epochs=run["epochs"],
        batch_size=run["batch_size"],
        learning_rate=float(run["learning_rate"]),
        schedule=run["schedule"],
        warmup_epochs=run["warmup_epochs"],
        loss=run["loss"],
        augment=run["augment"],
        balance=run["balance"],
        precision=run["precision"],
        deterministic=run["deterministic"],
        seed=run["seed"],
        backbone=model["backbone"],
        encoder_weights=model["encoder_weights"],
        input_size=model["input_size"],
        distribute=run["distribute"],
        init_from=run.get("init_from"),
        min_cell_diameter=model["min_cell_diameter"],
    )


def extra_datasets(params: dict, root: str | os.PathLike = ".") -> tuple[ExtraDataset, ...]:
    """The lab datasets of `data.extra_datasets`, each in data/extra/<name> under `root`."""
    folder = stage_paths(root)["extra"]
    return tuple(ExtraDataset(name, folder / name, **(spec or {})) for name, spec in params["data"]["extra_datasets"].items())
