"""The bioimage.io export: a package that bioimageio.core's own test routine passes, for each weight
format, and an rdf that says what the model card says. Skipped without the optional extra.

Making and testing the package takes about 100 s on 2 cores, so those tests are in the integration
lane (`make test`); the refusals are fast and run in `make check`."""

from __future__ import annotations

import json
import os
import shutil
import sys
import zipfile

import numpy as np
import pytest

pytest.importorskip("bioimageio.core", reason="optional extra: pip install wbcseg[bioimageio]")

from bioimageio.spec import load_model_description  # noqa: E402

from wbcseg.errors import WbcsegError  # noqa: E402
from wbcseg.model_package import INPUT_ID, OUTPUT_ID, check_package, export_bioimageio  # noqa: E402

TEST_METRICS = {
    "protocol": "held-out test split, native resolution",
    "d1": {"nucleus": {"dice": 0.9571, "iou": 0.919, "hd95": 2.5, "n_images": 60}},
    "inference": {"tta": "dihedral", "postprocess": True, "precision": "float32", "engine": "tensorflow"},
}


@pytest.fixture(scope="module")
def tissue_package(tissue_model_dir, tmp_path_factory):
    """The package of the untrained tissue model, evaluated as `04_evaluate` records it."""
    model_dir = tmp_path_factory.mktemp("evaluated") / "model"
    shutil.copytree(tissue_model_dir, model_dir)
    (model_dir / "test_metrics.json").write_text(json.dumps(TEST_METRICS))
    yy, xx = np.mgrid[:120, :120]
    cell = np.where(np.hypot(yy - 60, xx - 60)[..., None] < 30, [90, 40, 140], [235, 215, 170]).astype(np.uint8)
    return export_bioimageio(model_dir, tmp_path_factory.mktemp("export") / "wbc.zip", cell, authors=["A. Tester"])


@pytest.mark.integration
def test_the_package_passes_the_bioimageio_core_test_routine(tissue_package, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    summary = check_package(tissue_package)

    assert summary.status == "passed", summary.format()
    reproduced = [d.name for d in summary.details if d.name.startswith("Reproduce test outputs") and d.status == "passed"]
    assert reproduced == [
        "Reproduce test outputs from test inputs (keras_v3)",
        "Reproduce test outputs from test inputs (tensorflow_saved_model_bundle)",
    ]
    assert list(tmp_path.iterdir()) == []  # the core's unzipped SavedModel went elsewhere
    # bioimageio.core's keras adapter leaves its KERAS_BACKEND in the environment of every later child process
    assert os.environ["KERAS_BACKEND"] == "tensorflow"


@pytest.mark.integration
def test_the_rdf_describes_the_model_its_data_and_licence(tissue_package, tissue_model_dir):
    descr = load_model_description(tissue_package)

    (inp,), (out,) = descr.inputs, descr.outputs
    assert (inp.id, out.id) == (INPUT_ID, OUTPUT_ID)
    assert [a.type for a in inp.axes] == ["batch", "space", "space", "channel"]
    assert [a.size for a in inp.axes[1:3]] == [96, 96]
    assert (inp.data.type, tuple(inp.data.range)) == ("uint8", (0, 255))
    assert [p.id for p in inp.preprocessing] == ["ensure_dtype"] and inp.preprocessing[0].kwargs.dtype == "float32"
    assert out.axes[-1].channel_names == ["background", "cytoplasm", "nucleus"]
    assert {"keras_v3", "tensorflow_saved_model_bundle"} <= set(descr.weights.available_formats)
    assert descr.license == "GPL-3.0-only"
    assert "10.1016/j.micron.2018.01.010" in [str(c.doi) for c in descr.cite]
    assert [a.name for a in descr.authors] == ["A. Tester"]

    with zipfile.ZipFile(tissue_package) as package:
        readme = package.read("README.md").decode()
        test_input = np.load(package.open("test_input.npy"))
        expected = np.load(package.open("test_output.npy"))
    assert "## Validation" in readme and "| d1 | nucleus | 0.957 | 0.919 | 2.5 | 60 |" in readme
    assert "GPL-3.0" in readme and "Install model manually" in readme and "Create pixel classifier" in readme
    assert test_input.shape == (1, 96, 96, 3) and test_input.dtype == np.uint8
    assert expected.shape == (1, 96, 96, 3)
    np.testing.assert_allclose(expected.sum(-1), 1.0, atol=1e-4)  # softmax over the three classes


def test_a_bad_sample_image_is_refused_before_anything_is_written(tissue_model_dir, tmp_path):
    with pytest.raises(WbcsegError, match=r"sample_image: expected an RGB uint8 array \(H, W, 3\), got float64"):
        export_bioimageio(tissue_model_dir, tmp_path / "wbc.zip", np.zeros((64, 64, 3)))
    assert list(tmp_path.iterdir()) == []


def test_without_the_extra_the_error_names_it(tissue_model_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "bioimageio.spec", None)
    with pytest.raises(WbcsegError, match=r"needs the optional extra: pip install wbcseg\[bioimageio\]$"):
        export_bioimageio(tissue_model_dir, tmp_path / "wbc.zip", np.zeros((64, 64, 3), np.uint8))


def test_the_command_exports_and_names_a_missing_sample(tissue_model_dir, tmp_path, capsys):
    from wbcseg.cli import main

    code = main(["export", str(tissue_model_dir), "--format", "bioimageio", "--out", str(tmp_path / "wbc.zip"),
                 "--sample", str(tmp_path / "missing.png")])

    assert code == 2 and "missing.png: file not found" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_the_command_refuses_a_bad_model_directory_in_one_line(tmp_path, capsys):
    from wbcseg.cli import main

    code = main(["export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "wbc.zip"), "--sample", "cell.png"])

    (line,) = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and line.startswith("wbcseg export: error: ") and "model directory not found" in line
