"""`wbcseg predict`: the command, end to end.

The CLI runs use the untrained 96-px fixture models: their masks are garbage but deterministic,
which is all that plumbing needs; the interrupted and killed runs use a stand-in model.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_cli import run_cli
from wbcseg import cli
from wbcseg.batch import predict_files
from wbcseg.card import CARD_FILE, MODEL_FILE, TEST_METRICS_FILE
from wbcseg.data import read_mask
from wbcseg.files import LOCK_FILE, OutputFolder
from wbcseg.measure import measurement_columns
from wbcseg.overlay import legend_strip
from wbcseg.segmenter import DEFAULT_BATCH_SIZE, Segmenter

from stand_ins import ColourModel

RNG = np.random.default_rng(0)
TISSUE_CARD = {"task": "tissue", "classes": ["background", "cytoplasm", "nucleus"], "input_size": 32}


def rgb(h, w):
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


HEADER = re.compile(r"wbcseg predict: \d+ images; ")


def our_lines(stderr: str) -> list[str]:
    """The lines wbcseg printed (TensorFlow logs to the same stream), but the header of a run."""
    return [line for line in stderr.splitlines() if line.startswith("wbcseg predict") and not HEADER.match(line)]


def model_variant(tmp_path: Path, model_dir: Path, inference: dict | None = None, **card_changes) -> Path:
    """A model directory sharing `model_dir`'s weights (symlinked) with a changed card, and test
    metrics that record the inference options `inference`."""
    variant = tmp_path / "model_variant"
    variant.mkdir()
    (variant / MODEL_FILE).symlink_to(Path(model_dir) / MODEL_FILE)
    card = json.loads((Path(model_dir) / CARD_FILE).read_text())
    (variant / CARD_FILE).write_text(json.dumps({**card, **card_changes}))
    if inference is not None:
        (variant / TEST_METRICS_FILE).write_text(json.dumps({"d1": {}, "inference": inference}))
    return variant


def files_under(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file() and p.name != LOCK_FILE)


def rows_of(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def write_images(folder: Path, n: int, side: int = 30) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i:02d}.png" for i in range(n)]
    for path in paths:
        Image.fromarray(rgb(side, side)).save(path)
    return paths


# --------------------------------------------------------------------------- interrupted, killed, repeated and concurrent runs


class InterruptedModel(ColourModel):
    """A stand-in model that is interrupted (Ctrl-C) on its second call."""

    calls = 0

    def predict_on_batch(self, x):
        self.calls += 1
        if self.calls == 2:
            raise KeyboardInterrupt
        return super().predict_on_batch(x)


def test_an_interrupted_run_leaves_complete_outputs_only(tmp_path):
    files = []
    for i in range(4):
        files.append(tmp_path / "in" / f"{i}.png")
        files[-1].parent.mkdir(exist_ok=True)
        Image.fromarray(rgb(30, 30)).save(files[-1])
    segmenter = Segmenter(InterruptedModel(3), {"task": "tissue", "classes": ["background", "cytoplasm", "nucleus"], "input_size": 32})
    with pytest.raises(KeyboardInterrupt):
        predict_files(segmenter, files, tmp_path / "out", batch_size=2)
    assert files_under(tmp_path / "out") == [
        Path("masks/0.png"), Path("masks/1.png"), Path("measurements.csv"), Path("overlays/0.png"), Path("overlays/1.png")
    ]
    with open(tmp_path / "out" / "measurements.csv", newline="") as fh:
        assert [row["mask"] for row in csv.DictReader(fh)] == ["masks/0.png", "masks/1.png"]


def test_ctrl_c_ends_in_a_summary_not_a_traceback(tmp_path, tissue_model_dir, monkeypatch):
    write_images(tmp_path / "in", 3)

    def interrupted(*args, counts, **kwargs):
        counts.ok = 1
        raise KeyboardInterrupt

    monkeypatch.setattr("wbcseg.batch.predict_files", interrupted)
    code, stdout, stderr = run_cli(["predict", str(tmp_path / "in"), "--model", str(tissue_model_dir), "--out", str(tmp_path / "out")])
    assert code == 130
    assert "interrupted: 1 ok, 0 failed, 2 not done" in stdout and "Traceback" not in stderr


KILLER = textwrap.dedent(
    """
    import os, signal, sys, time
    sys.path.insert(0, sys.argv[3])
    from stand_ins import ColourModel
    from wbcseg.batch import predict_files
    from wbcseg.segmenter import Segmenter

    class Killed(ColourModel):
        calls = 0
        def predict_on_batch(self, x):
            self.calls += 1
            if self.calls == 3:
                time.sleep(1)  # the writer threads finish the first two batches
                os.kill(os.getpid(), signal.SIGKILL)
            return super().predict_on_batch(x)

    card = {"task": "tissue", "classes": ["background", "cytoplasm", "nucleus"], "input_size": 32}
    files = sorted(os.path.join(sys.argv[1], name) for name in os.listdir(sys.argv[1]))
    predict_files(Segmenter(Killed(3), card), files, sys.argv[2], batch_size=4)
    """
)


def test_a_hard_kill_loses_no_row_of_a_finished_image_and_the_rerun_recovers_them(tmp_path):
    write_images(tmp_path / "in", 12)
    out = tmp_path / "out"
    killed = subprocess.run([sys.executable, "-c", KILLER, str(tmp_path / "in"), str(out), str(Path(__file__).parent)], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    masks = {f"masks/{p.name}" for p in (out / "masks").iterdir()}
    assert len(masks) == 8  # two batches were finished before the kill
    journal = rows_of(out / ".measurements.csv.partial")
    assert {row["mask"] for row in journal} == masks  # every finished image has its row
    files = sorted((tmp_path / "in").iterdir())[8:]
    with OutputFolder(out) as folder:  # the lock died with the killed process
        predict_files(Segmenter(ColourModel(3), TISSUE_CARD), files, folder, batch_size=4)
    assert sorted(row["mask"] for row in rows_of(out / "measurements.csv")) == sorted(f"masks/{i:02d}.png" for i in range(12))
    assert not (out / ".measurements.csv.partial").exists()


def test_a_second_run_into_the_same_folder_is_refused_before_the_model_loads(tmp_path, tissue_model_dir, monkeypatch):
    write_images(tmp_path / "in", 2)
    monkeypatch.setattr("wbcseg.segmenter.Segmenter.load", lambda *a, **k: pytest.fail("the model was loaded"))
    with OutputFolder(tmp_path / "out"):
        code, _, stderr = run_cli(["predict", str(tmp_path / "in"), "--model", str(tissue_model_dir), "--out", str(tmp_path / "out")])
    assert code == 2
    assert our_lines(stderr) == [f"wbcseg predict: error: {tmp_path / 'out'}: another wbcseg predict is writing there; wait for it to end or use another --out"]


def test_a_rerun_keeps_the_rows_of_images_it_does_not_redo(tmp_path, tissue_model_dir):
    images = write_images(tmp_path / "in", 3)
    out = tmp_path / "out"
    assert run_cli(["predict", str(images[0]), str(images[1]), "--model", str(tissue_model_dir), "--out", str(out)])[0] == 0
    first = {row["mask"]: row for row in rows_of(out / "measurements.csv")}
    assert run_cli(["predict", str(images[1]), str(images[2]), "--model", str(tissue_model_dir), "--out", str(out)])[0] == 0
    rows = rows_of(out / "measurements.csv")
    assert [row["mask"] for row in rows] == ["masks/00.png", "masks/01.png", "masks/02.png"]
    assert rows[0] == first["masks/00.png"]
    assert files_under(out) == sorted([Path("measurements.csv")] + [Path(d) / f"0{i}.png" for i in range(3) for d in ("masks", "overlays")])


@pytest.mark.parametrize("problem", ["file", "under_a_file"])
def test_an_unusable_out_is_one_line_before_the_model_loads(tmp_path, tissue_model_dir, monkeypatch, problem):
    write_images(tmp_path / "in", 1)
    (tmp_path / "a_file").write_text("x")
    out = tmp_path / "a_file" if problem == "file" else tmp_path / "a_file" / "out"
    monkeypatch.setattr("wbcseg.segmenter.Segmenter.load", lambda *a, **k: pytest.fail("the model was loaded"))
    code, _, stderr = run_cli(["predict", str(tmp_path / "in"), "--model", str(tissue_model_dir), "--out", str(out)])
    assert code == 2
    (line,) = our_lines(stderr)
    assert line.startswith(f"wbcseg predict: error: {out}: ")


def test_no_images_or_missing_paths_are_answered_without_loading_tensorflow(tmp_path, tissue_model_dir):
    (tmp_path / "empty").mkdir()
    code = (
        "import sys; from wbcseg.cli import main\n"
        f"code = main(['predict', {str(tmp_path / 'empty')!r}, {str(tmp_path / 'nope')!r}, '--model', {str(tissue_model_dir)!r}, '--out', {str(tmp_path / 'out')!r}])\n"
        "print(code, 'tensorflow' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["1", "False"]
    assert f"{tmp_path / 'nope'}: no such file or folder" in result.stderr and "no images" in result.stderr


def test_the_default_batch_size_is_the_segmenters():
    assert cli.build_parser().parse_args(["predict", "x", "--model", "m", "--out", "o"]).batch_size == DEFAULT_BATCH_SIZE


# --------------------------------------------------------------------------- the command: a tissue run

def write_inputs(root: Path) -> tuple[dict[str, tuple], dict[str, str]]:
    """Good images of every kind in nested folders, and bad files, under `root`.

    Returns {relative path: (height, width)} of the good ones and {relative path: expected reason} of the bad ones.
    """
    good = {
        "cells/cell.bmp": rgb(120, 100),
        "cells/cell.png": rgb(64, 80),  # same stem, same folder
        "cells/deep/cell.png": rgb(97, 101),  # same name, other folder
        "cells/photo.jpg": rgb(50, 60),
        "cells/rgba.png": np.dstack([rgb(40, 41), np.full((40, 41, 1), 128, np.uint8)]),
        "cells/grey.png": rgb(33, 30)[..., 0],
        "cells/grey16.tif": RNG.integers(0, 65536, (44, 40), dtype=np.uint16),
        "cells/deep/rgb.tiff": rgb(36, 38),
    }
    for rel, array in good.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(root / rel)
    png = (root / "cells/cell.png").read_bytes()
    corrupt = bytearray(png)
    corrupt[100:300] = bytes(200)
    (root / "cells/bad/corrupt.png").parent.mkdir()
    (root / "cells/bad/corrupt.png").write_bytes(bytes(corrupt))
    (root / "cells/bad/truncated.png").write_bytes(png[: len(png) // 2])
    (root / "cells/bad/not_an_image.jpg").write_text("hello")
    (root / "cells/bad/empty.bmp").write_bytes(b"")
    (root / "notes.txt").write_text("not an image, passed by name")
    bad = {
        "cells/bad/corrupt.png": "not a readable image",
        "cells/bad/truncated.png": "truncated",
        "cells/bad/not_an_image.jpg": "not a readable image",
        "cells/bad/empty.bmp": "file is empty",
        "notes.txt": "not a readable image",
    }
    return {rel: array.shape[:2] for rel, array in good.items()}, bad


@pytest.fixture(scope="module")
def tissue_run(tissue_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("tissue_run")
    good, bad = write_inputs(root / "in")
    out = root / "out"
    code, stdout, stderr = run_cli(
        ["predict", str(root / "in" / "cells"), str(root / "in" / "notes.txt"), "--model", str(tissue_model_dir), "--out", str(out), "--batch-size", "4"]
    )
    return {"code": code, "stdout": stdout, "stderr": stderr, "out": out, "good": good, "bad": bad, "root": root}


def test_run_exit_code_and_summary(tissue_run):
    assert tissue_run["code"] == 1
    assert "8 ok, 5 failed" in tissue_run["stdout"]


def test_each_bad_file_is_one_line_naming_it(tissue_run):
    lines = our_lines(tissue_run["stderr"])
    assert len(lines) == len(tissue_run["bad"])
    header = "wbcseg predict: 13 images; tissue model at 96 px, TTA off, post-processing off, float32 on tensorflow"
    assert header in tissue_run["stderr"].splitlines()
    for rel, reason in tissue_run["bad"].items():
        (line,) = [line for line in lines if str(tissue_run["root"] / "in" / rel) in line]
        assert reason in line


def test_masks_and_overlays_at_native_size_without_collisions(tissue_run):
    out = tissue_run["out"]
    # Below the inputs' common folder (in/, because of notes.txt); same stems in one folder keep their extension.
    expected = {
        "cells/cell.bmp": "cells/cell.bmp", "cells/cell.png": "cells/cell.png", "cells/deep/cell.png": "cells/deep/cell",
        "cells/photo.jpg": "cells/photo", "cells/rgba.png": "cells/rgba", "cells/grey.png": "cells/grey",
        "cells/grey16.tif": "cells/grey16", "cells/deep/rgb.tiff": "cells/deep/rgb",
    }
    assert files_under(out) == sorted(
        [Path("measurements.csv")] + [Path(d) / f"{name}.png" for name in expected.values() for d in ("masks", "overlays")]
    )  # also: no temporary files left behind
    for rel, name in expected.items():
        grey = np.asarray(Image.open(out / "masks" / f"{name}.png"))
        assert grey.shape == tissue_run["good"][rel] and set(np.unique(grey)) <= {0, 128, 255}
        read_mask(out / "masks" / f"{name}.png", shape=tissue_run["good"][rel])  # the dataset's convention
        h, w = tissue_run["good"][rel]
        overlaid = np.asarray(Image.open(out / "overlays" / f"{name}.png"))
        assert overlaid.shape == (h + legend_strip(w, "tissue").shape[0], w, 3)  # the legend below the image


def test_measurements_csv_has_one_row_per_image(tissue_run):
    with open(tissue_run["out"] / "measurements.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["image", "mask", "overlay", "width", "height", *measurement_columns()]
    assert sorted(Path(r["image"]).relative_to(tissue_run["root"] / "in").as_posix() for r in rows) == sorted(tissue_run["good"])
    for row in rows:
        h, w = tissue_run["good"][Path(row["image"]).relative_to(tissue_run["root"] / "in").as_posix()]
        assert (int(row["height"]), int(row["width"])) == (h, w)
        grey = np.asarray(Image.open(tissue_run["out"] / row["mask"]))
        assert int(row["wbc_area_px"]) == int((grey > 0).sum())
        assert int(row["nucleus_area_px"]) == int((grey == 255).sum())


# --------------------------------------------------------------------------- the command: a binary run


def test_binary_run_with_card_defaults_pixel_size_and_size_limit(binary_model_dir, tmp_path):
    model_dir = model_variant(tmp_path, binary_model_dir, inference={"postprocess": True})
    for name, side in (("small", 40), ("large", 300)):
        Image.fromarray(rgb(side, side)).save(tmp_path / f"{name}.png")
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(
        ["predict", str(tmp_path / "small.png"), str(tmp_path / "large.png"), "--model", str(model_dir),
         "--out", str(out), "--pixel-size", "0.5", "--max-megapixels", "0.01"]
    )
    assert code == 1 and "1 ok, 1 failed" in stdout
    (line,) = our_lines(stderr)
    assert str(tmp_path / "large.png") in line and "0.09 megapixels" in line and "--max-megapixels" in line
    mask = np.asarray(Image.open(out / "masks" / "small.png"))
    assert mask.shape == (40, 40) and set(np.unique(mask)) <= {0, 255}
    with open(out / "measurements.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["nucleus_area_px"] == "" and row["nc_ratio"] == ""
    assert float(row["wbc_area_um2"]) == int(row["wbc_area_px"]) * 0.25
    assert int(row["n_components"]) <= 1  # postprocess on, as the card records


def test_engine_from_the_card_or_the_command_line(tissue_model_dir, cell_image, tmp_path):
    model_dir = model_variant(tmp_path, tissue_model_dir, inference={"engine": "openvino"})
    Image.fromarray(cell_image[0]).save(tmp_path / "cell.png")
    masks = {}
    for engine, extra in (("openvino", []), ("tensorflow", ["--engine", "tensorflow"])):
        out = tmp_path / engine
        code, _, stderr = run_cli(["predict", str(tmp_path / "cell.png"), "--model", str(model_dir), "--out", str(out), *extra])
        assert code == 0
        assert f"float32 on {engine}" in stderr
        masks[engine] = np.asarray(Image.open(out / "masks" / "cell.png"))
    # Same network, both in float32: only near ties of this untrained model may differ.
    assert (masks["openvino"] == masks["tensorflow"]).mean() > 0.99


# --------------------------------------------------------------------------- the command: bad model directories


@pytest.fixture
def one_image(tmp_path) -> str:
    Image.fromarray(rgb(20, 20)).save(tmp_path / "one.png")
    return str(tmp_path / "one.png")


def test_missing_model_directory(one_image, tmp_path):
    code, _, stderr = run_cli(["predict", one_image, "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "out")])
    assert code == 2
    (line,) = our_lines(stderr)
    assert str(tmp_path / "nope") in line and "not found" in line


def test_incomplete_model_directories(one_image, tissue_model_dir, tmp_path):
    only_card = tmp_path / "only_card"
    only_card.mkdir()
    (only_card / CARD_FILE).write_text((tissue_model_dir / CARD_FILE).read_text())
    only_weights = tmp_path / "only_weights"
    only_weights.mkdir()
    (only_weights / MODEL_FILE).symlink_to(tissue_model_dir / MODEL_FILE)
    bad_card = model_variant(tmp_path, tissue_model_dir, classes=["background", "cell"])
    for model_dir, reason in ((only_card, MODEL_FILE), (only_weights, CARD_FILE), (bad_card, "do not agree")):
        code, _, stderr = run_cli(["predict", one_image, "--model", str(model_dir), "--out", str(tmp_path / "out")])
        assert code == 2
        (line,) = our_lines(stderr)
        assert str(model_dir) in line and reason in line
    assert not (tmp_path / "out").exists()


def test_mismatched_model_and_card(one_image, tissue_model_dir, tmp_path):
    model_dir = model_variant(tmp_path, tissue_model_dir, input_size=128)
    code, _, stderr = run_cli(["predict", one_image, "--model", str(model_dir), "--out", str(tmp_path / "out")])
    assert code == 2
    (line,) = our_lines(stderr)
    assert "card says 128x128x3" in line


def test_command_line_entry_point(one_image, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "wbcseg.cli", "predict", one_image, "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "out")],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert our_lines(result.stderr) == [f"wbcseg predict: error: {tmp_path / 'nope'}: model directory not found (train one with `dvc repro`, or `dvc pull` one)"]


def test_a_corrupt_test_metrics_file_is_exit_2(one_image, tissue_model_dir, tmp_path):
    model_dir = model_variant(tmp_path, tissue_model_dir)
    (model_dir / TEST_METRICS_FILE).write_text('{"d1": {"cell"')
    code, _, stderr = run_cli(["predict", one_image, "--model", str(model_dir), "--out", str(tmp_path / "out")])
    assert code == 2
    (line,) = our_lines(stderr)
    assert f"{model_dir / TEST_METRICS_FILE}: the test metrics is not valid JSON" in line


def test_the_api_and_the_command_give_the_same_mask(tissue_model_dir, cell_image, tmp_path):
    model_dir = model_variant(tmp_path, tissue_model_dir, inference={"tta": "dihedral", "postprocess": True, "precision": "float32", "engine": "tensorflow"})
    Image.fromarray(cell_image[0]).save(tmp_path / "cell.png")
    assert run_cli(["predict", str(tmp_path / "cell.png"), "--model", str(model_dir), "--out", str(tmp_path / "out")])[0] == 0
    from_command = read_mask(tmp_path / "out" / "masks" / "cell.png")
    segmenter = Segmenter.load(model_dir)
    assert (segmenter.tta, segmenter.postprocess) == ("dihedral", True)  # the card's options, as the command applies them
    from_api = segmenter.segment(cell_image[0]).labels
    np.testing.assert_array_equal(from_api, from_command)
    plain = Segmenter.load(model_dir, tta="none", postprocess=False).segment(cell_image[0]).labels
    assert not np.array_equal(plain, from_api)  # the options matter, so the comparison above means something


def test_tta_is_a_name_and_no_tta_means_none():
    parser = cli.build_parser()
    base = ["predict", "cell.png", "--model", "models/main", "--out", "out"]
    assert parser.parse_args(base).tta is None  # the card's
    assert parser.parse_args([*base, "--tta", "dihedral"]).tta == "dihedral"
    assert parser.parse_args([*base, "--no-tta"]).tta == "none"
    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
        parser.parse_args([*base, "--tta", "eight"])
