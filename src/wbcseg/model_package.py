"""Package a trained wbcseg model for the BioImage Model Zoo (bioimage.io model spec 0.5).

`export_bioimageio` writes one .zip that bioimage.io tools (bioimageio.core, deepImageJ, QuPath)
read: the rdf `rdf.yaml`, the weights as Keras v3 (`.keras`) and as a TensorFlow SavedModel, a
test input with the output this model computed for it, a cover, a README, the licence and the
citations. `check_package` runs bioimageio.core's test routine on such a .zip.

bioimageio.spec and bioimageio.core are an optional extra (`pip install wbcseg[bioimageio]`);
they are imported only when a package is made or checked.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from wbcseg import __version__
from wbcseg.backend import KERAS_BACKEND, tf
from wbcseg.card import MODEL_FILE
from wbcseg.classes import MASK_VALUES
from wbcseg.data import DATASET_REPO, read_image
from wbcseg.errors import WbcsegError
from wbcseg.network import load_model
from wbcseg.preprocess import resize_image

INPUT_ID = "rgb_0_255"
OUTPUT_ID = "class_probabilities"
#: The training data's licence (zxaoyou/segmentation_WBC ships the GPL version 3 text). Weights
#: learnt from it, and test tensors that may be its images, are released under the same terms.
PACKAGE_LICENSE = "GPL-3.0-only"
DATA_CITATION = (
    "Zheng X, Wang Y, Wang G, Liu J. Fast and robust segmentation of white blood cell images by "
    "self-supervised learning. Micron 107:55-71, 2018 (the training data).",
    "10.1016/j.micron.2018.01.010",
)
COVER_SIDE = 256
DEFAULT_AUTHORS = ("wbcseg contributors",)
EXTRA_HINT = "pip install wbcseg[bioimageio]"
#: How Fiji (deepImageJ) and QuPath users load the package, from their documentation; not tried
#: here (no Java runtime), hence the caveat on their TensorFlow engines.
USAGE_NOTES = """\
- Fiji / ImageJ with deepImageJ 3: *Plugins > DeepImageJ > Install model manually*, choose this
  .zip; then scale a single-cell crop to the model's input size, and run *Plugins > DeepImageJ >
  DeepImageJ Run* with this model.
- QuPath 0.5+ with the Deep Java Library and Bioimage Model Zoo extensions: unzip this .zip and the
  `tf_saved_model.zip` inside it, run *Extensions > Bioimage Model Zoo > Create pixel classifier*,
  pick `rdf.yaml`, and choose a resolution at which one white blood cell fills about the input size.
- Both run the `tensorflow_saved_model_bundle` weights with their own TensorFlow builds, older than
  the one that wrote them (`tensorflow_version` in rdf.yaml), which may refuse newer graph ops;
  bioimageio.core in Python runs both weight formats.
"""


def _bioimageio():
    """The spec's v0.5 model module and its packaging function, or a one-line error naming the extra."""
    try:
        from bioimageio.spec import save_bioimageio_package
        from bioimageio.spec.model import v0_5
    except ImportError as exc:
        raise WbcsegError(f"bioimage.io export needs the optional extra: {EXTRA_HINT}") from exc
    return v0_5, save_bioimageio_package


def export_bioimageio(
    model_dir: str | os.PathLike,
    out_path: str | os.PathLike,
    sample_image: str | os.PathLike | np.ndarray,
    *,
    authors: Sequence[str] = DEFAULT_AUTHORS,
    repository: str | None = None,
) -> Path:
    """Write the bioimage.io package (.zip) of the wbcseg model in `model_dir` to `out_path`.

    `sample_image` (an RGB image file or uint8 array, e.g. a held-out cell crop) becomes the test
    input, resized to the model's size; the expected output is what this model computes for it.
    `repository`, a public URL of the code, is cited and linked when given. The .zip is written
    under a hidden name beside `out_path`, validated by bioimageio.spec and only then renamed, so a
    failed export leaves nothing behind.
    """
    v0_5, save_bioimageio_package = _bioimageio()
    image = _rgb_uint8(sample_image)
    model, card = load_model(model_dir)
    out_path = Path(out_path)
    partial = out_path.with_name(f".{out_path.name}.partial")
    with tempfile.TemporaryDirectory(prefix="wbcseg-bioimageio-") as tmp:
        folder = Path(tmp)
        test_input = resize_image(image, card["input_size"])[None]
        test_output = model(test_input.astype(np.float32), training=False).numpy()
        files = {
            **_write_tensors(test_input, test_output, folder),
            **_write_weights(model, Path(model_dir), folder),
            "cover": _write_cover(test_input[0], test_output[0], folder / "cover.png"),
            "documentation": _write_readme(card, authors, folder / "README.md"),
        }
        descr = _describe(v0_5, card, files, model.count_params(), authors, repository)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            save_bioimageio_package(descr, output_path=partial)
            partial.replace(out_path)
        finally:
            partial.unlink(missing_ok=True)
    return out_path


def _rgb_uint8(sample_image: str | os.PathLike | np.ndarray) -> np.ndarray:
    if not isinstance(sample_image, np.ndarray):
        return read_image(sample_image)
    if sample_image.dtype != np.uint8 or sample_image.ndim != 3 or sample_image.shape[-1] != 3:
        raise WbcsegError(
            f"sample_image: expected an RGB uint8 array (H, W, 3), got {sample_image.dtype} {sample_image.shape}"
        )
    return sample_image


def check_package(package: str | os.PathLike, weight_format: str | None = None):
    """bioimageio.core's test routine on a package: its rdf validated, and the test input run through
    each weight format (or only `weight_format`) and compared with the test output. Returns the
    ValidationSummary: `.status` is "passed" only if every check passed; `.format()` tells which
    failed and why."""
    try:
        from bioimageio.core import test_model
    except ImportError as exc:
        raise WbcsegError(f"checking a bioimage.io package needs the optional extra: {EXTRA_HINT}") from exc
    package = Path(package).resolve()
    if not package.is_file():
        raise WbcsegError(f"{package}: no such bioimage.io package")
    cwd = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="wbcseg-bioimageio-test-") as tmp:
        # bioimageio.core unzips SavedModel weights into ./bioimageio_unzipped_tf_weights: keep that
        # out of the user's working directory.
        os.chdir(tmp)
        try:
            return test_model(package, weight_format=weight_format)
        finally:
            os.chdir(cwd)
            # Its keras adapter may set KERAS_BACKEND to its own choice, which every later child
            # process (a notebook kernel, a Dask worker) would inherit; wbcseg's models need this one.
            os.environ["KERAS_BACKEND"] = KERAS_BACKEND


def _write_tensors(test_input: np.ndarray, test_output: np.ndarray, folder: Path) -> dict[str, Path]:
    """The test tensors (.npy, compared by the test routine) and sample images (for people)."""
    paths = {
        "test_input": folder / "test_input.npy",
        "test_output": folder / "test_output.npy",
        "sample_input": folder / "sample_input.png",
        "sample_output": folder / "sample_output.tif",
    }
    np.save(paths["test_input"], test_input)
    np.save(paths["test_output"], test_output.astype(np.float32))
    Image.fromarray(test_input[0]).save(paths["sample_input"])
    tifffile.imwrite(paths["sample_output"], test_output[0].astype(np.float32))
    return paths


def _write_weights(model, model_dir: Path, folder: Path) -> dict[str, Path]:
    """model.keras as it is, and a TensorFlow SavedModel (zipped, as the spec asks) whose function
    `serve` and signature `serving_default` take `INPUT_ID` and return {`OUTPUT_ID`: probabilities}:
    bioimageio.core reads the outputs as a dict, and Java consumers find the tensors by these names."""
    keras_path = folder / MODEL_FILE
    shutil.copyfile(model_dir / MODEL_FILE, keras_path)
    module = tf.Module()
    # The tf.Variables under the Keras wrappers, the very ones the traced function captures: the
    # checkpoint then holds each weight once, where model.export() stores it twice (keras#23553).
    module.model_variables = [weight.value for weight in model.weights]
    module.serve = tf.function(
        lambda images: {OUTPUT_ID: model(images, training=False)},
        input_signature=[tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name=INPUT_ID)],
    )
    saved_model = folder / "tf_saved_model"
    tf.saved_model.save(module, str(saved_model), signatures={"serving_default": module.serve})
    bundle = shutil.make_archive(str(saved_model), "zip", saved_model)
    return {"keras_v3": keras_path, "tensorflow_saved_model_bundle": Path(bundle)}


def _write_cover(image: np.ndarray, probabilities: np.ndarray, path: Path) -> Path:
    """The test input beside the model's class map, drawn in the dataset's mask greys (2:1 cover)."""
    if probabilities.shape[-1] == 1:
        grey = np.where(probabilities[..., 0] > 0.5, 255, 0).astype(np.uint8)
    else:
        grey = MASK_VALUES[probabilities.argmax(-1)]
    class_map = np.repeat(grey[..., None], 3, axis=-1)
    panels = [Image.fromarray(a).resize((COVER_SIDE, COVER_SIDE), Image.NEAREST) for a in (image, class_map)]
    cover = Image.new("RGB", (2 * COVER_SIDE, COVER_SIDE))
    for i, panel in enumerate(panels):
        cover.paste(panel, (i * COVER_SIDE, 0))
    cover.save(path)
    return path


def _title(card: dict) -> str:
    what = "whole-cell" if card["task"] == "binary" else "cytoplasm and nucleus"
    return f"WBC {what} segmentation ({card['backbone']} U-Net)"


def _output_meaning(card: dict) -> str:
    if card["task"] == "binary":
        return "the sigmoid probability that a pixel belongs to the white blood cell (threshold 0.5)"
    return f"softmax probabilities of {', '.join(card['classes'])} per pixel (the class is the arg-max)"


def _num(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _validation_section(card: dict) -> str:
    val = card.get("val_metrics") or {}
    lines = ["## Validation"]
    if val:
        lines += [
            "",
            "Validation split at model size, as Keras measured it after training: "
            + ", ".join(f"{name} {_num(value)}" for name, value in sorted(val.items()))
            + ".",
        ]
    test = card.get("test_metrics")
    if not test:
        lines += ["", "No held-out evaluation was recorded beside this model (`wbcseg` writes `test_metrics.json`)."]
        return "\n".join(lines)
    options = ", ".join(f"{name} {value}" for name, value in (test.get("inference") or {}).items())
    lines += [
        "",
        f"Held-out test images ({test.get('protocol', 'protocol not recorded')}), mean per image; "
        f"inference options: {options or 'not recorded'}.",
        "",
        "| dataset | target | Dice | IoU | HD95 (px) | images |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for dataset, targets in test.items():
        if not isinstance(targets, dict) or dataset == "inference":
            continue
        for target, m in targets.items():
            lines.append(
                f"| {dataset} | {target} | {_num(m.get('dice'))} | {_num(m.get('iou'))} "
                f"| {_num(m.get('hd95'), 1)} | {m.get('n_images', 'n/a')} |"
            )
    return "\n".join(lines)


def _zoom_note(card: dict) -> str:
    """The README's line on zooming in on small cells, for a model trained so."""
    zoom = card.get("min_cell_diameter")
    if zoom is None:
        return ""
    return (
        f"\n  It was trained with crops whose white cell would be narrower than {zoom:g} px at this size\n"
        "  zoomed in on the cell (a square around it, resized to the input); `wbcseg predict` finds the\n"
        "  cell in a first pass and zooms the same way."
    )


def _write_readme(card: dict, authors: Sequence[str], path: Path) -> Path:
    size, params = card["input_size"], card.get("train_params", {})
    data = card.get("data", {})
    text = f"""# {_title(card)}

A U-Net whose encoder is {card['backbone']} (segmentation_models on TensorFlow/Keras), trained
with wbcseg {__version__} by {', '.join(authors)} to segment stained blood-smear crops of one white
blood cell.

## Input and output

- Input `{INPUT_ID}`: one RGB image of {size} x {size} pixels with values 0-255 (axes batch, y, x,
  channel). Resize a single-cell crop to that size first. The model scales the pixels itself
  (x / 127.5 - 1 is a layer of the network), so the only pre-processing is the cast to float32.
- Output `{OUTPUT_ID}`: {_output_meaning(card)}, at the input's size.
- Not in this package, because the spec has no terms for them: `wbcseg predict` also resizes the
  probabilities back to each image's own size before deciding the classes, averages over rotated
  and mirrored views (TTA) and keeps the central cell with its holes filled.{_zoom_note(card)}

## Training

- data: {DATASET_REPO} at commit {data.get('commit', 'n/a')}, datasets {data.get('datasets', 'n/a')}
- epochs: {params.get('epochs', 'n/a')} (best epoch {card.get('best_epoch', 'n/a')}); batch size
  {params.get('batch_size', 'n/a')}; Adam, learning rate {params.get('learning_rate', 'n/a')}
- loss: {params.get('loss', 'n/a')}; augmentation: {params.get('augment', 'n/a')}; seed: {params.get('seed', 'n/a')}
- encoder weights: {card.get('encoder_weights') or 'none (trained from scratch)'}

{_validation_section(card)}

## Use it

{USAGE_NOTES}
## Licence

The weights and test tensors are released under {PACKAGE_LICENSE}: they are learnt from, or may be,
images of the GPL-3.0 dataset {DATASET_REPO} (Zheng et al., Micron 2018; Dataset 1 by courtesy of
Jiangxi Tecom Science Corporation, Dataset 2 from the CellaVision blog). The wbcseg code that made
them is MIT-licensed.
"""
    path.write_text(text)
    return path


def _citations(v0_5, card: dict, repository: str | None) -> list:
    cite = [
        v0_5.CiteEntry(text=DATA_CITATION[0], doi=v0_5.Doi(DATA_CITATION[1])),
        v0_5.CiteEntry(
            text="Ronneberger O, Fischer P, Brox T. U-Net: convolutional networks for biomedical image "
            "segmentation. MICCAI 2015.",
            doi=v0_5.Doi("10.1007/978-3-319-24574-4_28"),
        ),
        v0_5.CiteEntry(
            text="Iakubovskii P. Segmentation Models (Keras/TensorFlow), version 1.0.1.",
            url=v0_5.HttpUrl("https://github.com/qubvel/segmentation_models"),
        ),
    ]
    if card["backbone"] == "inceptionv3":
        cite.append(
            v0_5.CiteEntry(
                text="Szegedy C et al. Rethinking the Inception architecture for computer vision. CVPR 2016.",
                doi=v0_5.Doi("10.1109/CVPR.2016.308"),
            )
        )
    if repository:
        cite.append(v0_5.CiteEntry(text=f"wbcseg {__version__} (the code that trained this model).", url=v0_5.HttpUrl(repository)))
    return cite


def _axes(v0_5, size: int, channels: Sequence[str], output: bool) -> list:
    channel = v0_5.ChannelAxis(channel_names=[v0_5.Identifier(name) for name in channels])
    if output:
        space = [
            v0_5.SpaceOutputAxis(id=v0_5.AxisId(a), size=v0_5.SizeReference(tensor_id=v0_5.TensorId(INPUT_ID), axis_id=v0_5.AxisId(a)))
            for a in "yx"
        ]
    else:
        space = [v0_5.SpaceInputAxis(id=v0_5.AxisId(a), size=size) for a in "yx"]
    return [v0_5.BatchAxis(), *space, channel]


def _describe(v0_5, card: dict, files: dict[str, Path], n_params: int, authors: Sequence[str], repository: str | None):
    import keras

    size, binary = card["input_size"], card["task"] == "binary"
    # A binary model has one sigmoid channel, the cell; a tissue model one softmax channel per class.
    channels = card["classes"][1:] if binary else card["classes"]
    structures = ["white blood cell"] if binary else ["white blood cell", *card["classes"][1:]]
    params = card.get("train_params", {})
    tf_version = v0_5.Version(tf.__version__)
    inputs = v0_5.InputTensorDescr(
        id=v0_5.TensorId(INPUT_ID),
        description=f"RGB single-cell crop, {size}x{size} px, 0-255; scaled by the model itself",
        axes=_axes(v0_5, size, ("red", "green", "blue"), output=False),
        test_tensor=v0_5.FileDescr(source=files["test_input"]),
        sample_tensor=v0_5.FileDescr(source=files["sample_input"]),
        data=v0_5.IntervalOrRatioDataDescr(type="uint8", range=(0, 255)),
        preprocessing=[v0_5.EnsureDtypeDescr(kwargs=v0_5.EnsureDtypeKwargs(dtype="float32"))],
    )
    outputs = v0_5.OutputTensorDescr(
        id=v0_5.TensorId(OUTPUT_ID),
        description=("sigmoid probability of the white blood cell" if binary else "softmax probabilities per class"),
        axes=_axes(v0_5, size, channels, output=True),
        test_tensor=v0_5.FileDescr(source=files["test_output"]),
        sample_tensor=v0_5.FileDescr(source=files["sample_output"]),
        data=v0_5.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
    )
    weights = v0_5.WeightsDescr(
        keras_v3=v0_5.KerasV3WeightsDescr(
            source=files["keras_v3"], keras_version=v0_5.Version(keras.__version__), backend=("tensorflow", tf_version)
        ),
        tensorflow_saved_model_bundle=v0_5.TensorflowSavedModelBundleWeightsDescr(
            source=files["tensorflow_saved_model_bundle"], tensorflow_version=tf_version, parent="keras_v3",
            comment="model.keras traced by tf.saved_model.save; function 'serve', signature 'serving_default'",
        ),
    )
    training = v0_5.TrainingDetails(
        training_epochs=params.get("epochs"), training_batch_size=params.get("batch_size"),
        initial_learning_rate=params.get("learning_rate"), loss_function=params.get("loss"), optimizer="Adam",
    )
    return v0_5.ModelDescr(
        name=_title(card),
        description=f"U-Net ({card['backbone']} encoder) that segments a stained blood-smear crop of one white "
        f"blood cell into {', '.join(card['classes'])}; trained with wbcseg on Zheng et al. 2018 (Micron).",
        authors=[v0_5.Author(name=name) for name in authors],
        cite=_citations(v0_5, card, repository),
        license=v0_5.LicenseId(PACKAGE_LICENSE),
        git_repo=v0_5.HttpUrl(repository) if repository else None,
        documentation=v0_5.FileDescr(source=files["documentation"]),
        covers=[v0_5.FileDescr(source=files["cover"])],
        tags=["segmentation", "2d", "unet", "white-blood-cell", "brightfield", "blood-smear", "tensorflow",
              "keras", *structures[1:]],
        inputs=[inputs],
        outputs=[outputs],
        weights=weights,
        config=v0_5.Config(
            bioimageio=v0_5.BioimageioConfig(
                architecture_type="U-Net", modality="brightfield microscopy, stained blood smear",
                target_structure=structures, task="semantic segmentation",
                model_parameter_count=n_params, training=training,
            )
        ),
    )
