import copy

import pytest
import yaml

from wbcseg.params import ParamsError, check_params, load_params, run_config

from projects import REPO


@pytest.fixture(scope="module")
def params():
    return load_params(REPO / "params.yaml")


def _broken(params, dotted, value):
    out = copy.deepcopy(params)
    node = out
    *parents, last = dotted.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    return out


@pytest.mark.parametrize(
    "dotted, value, message",
    [
        ("model.backbone", "inceptionv9", "model.backbone: must be one of resnet18, .*, got 'inceptionv9'"),
        ("model.input_size", 100, "model.input_size: .*divisible by 32, got 100"),
        ("model.input_size", 64, "model.input_size: .*>= 96"),
        ("model.min_cell_diameter", -5, "model.min_cell_diameter: must be a positive number, got -5"),
        ("model.min_cell_diameter", 128, r"model.min_cell_diameter: must be below model.input_size \(128\), got 128"),
        ("model.encoder_weights", "/nowhere/encoder.h5", "model.encoder_weights: weights file /nowhere/encoder.h5 does not exist"),
        ("train.task", "nuclei", "train.task: must be one of"),
        ("train.datasets", [3], "train.datasets: must be a non-empty list"),
        ("train.loss", "mse", "train.loss: must be one of"),
        ("train.epochs", 0, "train.epochs: must be a whole number >= 1"),
        ("split.test_fraction", 1.5, "split.test_fraction: must be a fraction"),
        ("variants.original", {"epoch": 3}, "variants.original.epoch: unknown key; variants.original knows task, datasets"),
        ("variants.original", {"datasets": [1, 1]}, "variants.original.datasets"),
        ("evaluate.tta", "yes", "evaluate.tta: must be one of none, flips, dihedral"),
        ("evaluate.precision", "half", "evaluate.precision: must be one of auto, float32, bfloat16"),
        ("evaluate.engine", "onnx", "evaluate.engine: must be one of auto, tensorflow, openvino"),
        ("crossval.folds", 1, "crossval.folds: must be 0 .* or a whole number >= 2"),
        ("crossval.variant", "best", "crossval.variant: must name a variant"),
        ("split.seed", "abc", "split.seed: must be a whole number >= 0, got 'abc'"),
        ("train.learning_rate", True, "train.learning_rate: must be a positive number, got True"),
        ("train.epochs", True, "train.epochs: must be a whole number >= 1, got True"),
        ("split.extra", 1, "split.extra: unknown key; split knows seed, test_fraction, val_fraction"),
        ("evaluate.overlay", 3, "evaluate.overlay: unknown key"),
        ("data.source", 5, "data.source: must be a non-empty string, got 5"),
        ("compare.targets", {"main": {"d3": {"cell": 0.9}}}, "compare.targets.main: 'd3' must be a dataset label"),
        ("compare.targets", {"main": {"d1": {"cell": 1.5}}}, r"compare.targets: main.d1.cell: must be a target .* in \(0, 1\], got 1.5"),
        ("compare.targets", {"best": {"d1": {"cell": 0.9}}}, "compare.targets.best: must name a variant or a fine-tuned model"),
        ("train.augment", True, "train.augment: must be one of none, basic, stain, capture, smear, got True"),
        ("train.schedule", "step", "train.schedule: must be one of constant, cosine"),
        ("train.precision", "float16", "train.precision: must be one of auto, float32, mixed_bfloat16"),
        ("train.warmup_epochs", 1000, r"variants.main: warmup_epochs \(1000\) must be fewer than epochs"),
        ("crossval.folds", 1.5, "crossval.folds: must be 0"),
    ],
)
def test_bad_param_is_a_clear_error(params, dotted, value, message):
    with pytest.raises(ParamsError, match=message):
        check_params(_broken(params, dotted, value))


def test_missing_or_unknown_group_or_key_is_named(params):
    broken = copy.deepcopy(params)
    del broken["split"]
    with pytest.raises(ParamsError, match="split: missing from params.yaml"):
        check_params(broken)
    del broken["model"]["input_size"]
    with pytest.raises(ParamsError, match="model.input_size: missing from params.yaml"):
        check_params({**params, "model": broken["model"]})
    with pytest.raises(ParamsError, match="trian: unknown parameter group"):
        check_params({**params, "trian": {}})


def test_backbones_are_those_of_segmentation_models():
    from wbcseg.backend import sm
    from wbcseg.params import BACKBONES

    assert list(BACKBONES) == list(sm.Backbones.models_names())


def test_variant_overrides_train_defaults(params):
    main, original = run_config(params, "main"), run_config(params, "original")
    assert (main.task, main.datasets, main.test_datasets) == ("tissue", (1, 2), (1, 2))
    assert (original.task, original.datasets, original.epochs, original.augment) == ("binary", (1,), 15, "none")
    assert run_config(params, "d1_to_d2").test_datasets == (2,)
    assert original.classes == ("background", "cell")
    with pytest.raises(ParamsError, match="variants.nope: no such variant"):
        run_config(params, "nope")


def test_load_params_reports_bad_yaml(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("model: [unclosed")
    with pytest.raises(ParamsError, match="params.yaml: not valid YAML"):
        load_params(path)


def test_default_experiment_is_the_tissue_model_on_both_datasets():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    assert raw["train"]["task"] == "tissue" and raw["train"]["datasets"] == [1, 2]
    assert raw["model"] == {"backbone": "inceptionv3", "encoder_weights": None, "input_size": 128, "min_cell_diameter": None}
