"""The `wbcseg` command line, thin over the package's modules.

Exit status: 0 done; 1 some input files failed (`predict`); 2 bad input (a parameter, the dataset,
a model directory, an output folder), said in one line; 130 interrupted. The heavy modules are
imported inside the commands, so a bad argument or parameter is answered before TensorFlow loads.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from wbcseg.errors import ClusterError, WbcsegError
from wbcseg.params import ENGINES, PRECISIONS, TTA

CHECKED = "params.yaml and the data source passed `wbcseg check`\n"


def _fetch(args) -> int:
    from wbcseg.data import SOURCE_ENV, fetch, resolve_source
    from wbcseg.params import load_params

    configured = None
    if not (args.source or os.environ.get(SOURCE_ENV)) and Path(args.params).is_file():
        configured = load_params(args.params)["data"]["source"]
    path = fetch(args.out, resolve_source(args.source, configured))
    print(f"dataset verified at {path}")
    return 0


def _check(args) -> int:
    from wbcseg.atomic import write_text
    from wbcseg.data import check_source, resolve_source
    from wbcseg.errors import DataError
    from wbcseg.params import extra_datasets, load_params

    params = load_params(args.params)
    check_source(resolve_source(None, params["data"]["source"]))
    problems = [problem for spec in extra_datasets(params, Path(args.params).parent) for problem in spec.problems()]
    if problems:
        raise DataError("\n".join(problems))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        write_text(args.out, CHECKED)
    print(f"{args.params}: every parameter, the data source and every lab dataset are usable")
    return 0


def _notebook(args) -> int:
    from wbcseg.runner import run_stage_notebook

    for path in run_stage_notebook(args.name, variant=args.variant, params_path=args.params):
        print(f"wrote {path}")
    return 0


def _inference_options(args) -> dict:
    return {"tta": args.tta, "postprocess": args.postprocess, "pixel_size": args.pixel_size, "precision": args.precision, "engine": args.engine}


def _predict_here(args, files, out, counts, say) -> None:
    from wbcseg.fieldbatch import predict_images
    from wbcseg.segmenter import Segmenter

    segmenter = Segmenter.load(args.model, **_inference_options(args))
    for note in segmenter.notes:
        say(note)
    say(f"{len(files)} images; {segmenter.describe()}" + ("" if args.mode == "crop" else f"; {args.mode} mode"))
    predict_images(segmenter, files, out, args.mode, args.cell_diameter, batch_size=args.batch_size, max_megapixels=args.max_megapixels, counts=counts)


def _predict_on_cluster(args, files, out, counts, say) -> None:
    try:
        from wbcseg import cluster
    except ImportError as exc:
        raise ClusterError(f"--workers and --scheduler need Dask: pip install 'wbcseg[dask]' ({exc})") from None

    with cluster.dask_client(args.workers, args.scheduler) as client:
        info = cluster.attach_segmenter(client, cluster.ModelSpec(os.path.abspath(args.model), _inference_options(args)))
        for note in info["notes"]:
            say(note)
        say(f"{len(files)} images on {len(client.scheduler_info()['workers'])} Dask workers; {info['describe']}")
        cluster.predict_on_cluster(client, files, out, args.batch_size, info["pixel_size"], args.max_megapixels, counts)


def _predict(args) -> int:
    from wbcseg.card import CARD_FILE, model_cell_diameter, read_model_dir
    from wbcseg.files import IMAGE_SUFFIXES, Counts, OutputFolder, find_images

    def say(message: str) -> None:
        print(f"wbcseg predict: {message}", file=sys.stderr)

    card = read_model_dir(args.model)  # a bad model directory stops us before any slow work
    if args.mode != "crop":
        model_cell_diameter(card, Path(args.model) / CARD_FILE)
        if args.workers or args.scheduler:
            raise ClusterError(f"--mode {args.mode}: whole fields run in one process; --workers and --scheduler spread crops only")
    files, missing = find_images(args.paths, exclude=args.out)
    for path in missing:
        say(f"{path}: no such file or folder")
    if not files:
        say(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {' '.join(map(str, args.paths))}")
        return 1
    counts = Counts()
    with OutputFolder(args.out) as out:
        run = _predict_on_cluster if args.workers or args.scheduler else _predict_here
        try:
            run(args, files, out, counts, say)
        except KeyboardInterrupt:
            left = len(files) - counts.ok - counts.failed
            print(f"wbcseg predict: interrupted: {counts.ok} ok, {counts.failed} failed, {left} not done; "
                  f"measurements.csv in {args.out} lists the finished images")
            return 130
    failed = counts.failed + len(missing)
    outputs = "masks, overlays and measurements.csv" if args.mode == "crop" else "masks, instance labels, overlays, GeoJSON, ROI sets and measurements.csv"
    print(f"wbcseg predict: {counts.ok} ok, {failed} failed; {outputs} in {args.out}")
    return 1 if failed else 0


def _export(args) -> int:
    from wbcseg.card import read_model_dir

    read_model_dir(args.model)  # a bad model directory stops us before TensorFlow loads
    from wbcseg.model_package import DEFAULT_AUTHORS, check_package, export_bioimageio

    package = export_bioimageio(args.model, args.out, args.sample, authors=args.author or DEFAULT_AUTHORS, repository=args.repository)
    print(f"wrote {package}")
    if not args.check:
        return 0
    summary = check_package(package)
    if summary.status != "passed":
        print(summary.format(), file=sys.stderr)
        return 1
    print(f"{package}: passed bioimageio.core's test routine")
    return 0


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its error message
    return parse


def _predict_arguments(parser: argparse.ArgumentParser) -> None:
    from wbcseg.files import DEFAULT_MAX_MEGAPIXELS

    batch_size = 32  # segmenter.DEFAULT_BATCH_SIZE, repeated so that `--help` needs no TensorFlow; a test compares them
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files, or folders searched recursively for BMP, PNG, JPEG and TIFF")
    parser.add_argument("--model", required=True, metavar="MODEL_DIR", help="a trained model directory (model.keras + model_card.json)")
    parser.add_argument("--out", required=True, metavar="DIR", help="where masks/, overlays/, measurements.csv (and for fields instances/, geojson/, rois/) go")
    parser.add_argument("--batch-size", type=_positive(int), default=batch_size, metavar="N", help=f"images per model call (default {batch_size})")
    parser.add_argument(
        "--max-megapixels", type=_positive(float), default=DEFAULT_MAX_MEGAPIXELS, metavar="MP",
        help=f"refuse images larger than this (default {DEFAULT_MAX_MEGAPIXELS:g})",
    )
    modes = ("crop", "field", "auto")  # fieldbatch.MODES, repeated so that `--help` needs no TensorFlow; a test compares them
    parser.add_argument(
        "--mode", choices=modes, default="crop",
        help="crop: each image is a crop centred on one white cell (the default); field: a whole smear field, every white "
        "cell found, separated and measured; auto: decided per image from its size in cell diameters, said per image",
    )
    parser.add_argument(
        "--cell-diameter", type=_positive(float), metavar="PX",
        help="white-cell diameter in pixels in your images, for field and auto modes (default: from --pixel-size, else estimated per image)",
    )
    parser.add_argument(
        "--pixel-size", type=_positive(float), metavar="UM",
        help="µm per pixel; adds areas in µm² to measurements.csv, and in field and auto modes sets the scale (cells 12 µm across)",
    )
    recorded = "(default: what the model card records, else {})"
    parser.add_argument(
        "--tta", choices=TTA, default=None,
        help=f"average predictions over views of each image: flips (3 views) or dihedral (8: rotations and mirror images) {recorded.format('none')}",
    )
    parser.add_argument("--no-tta", dest="tta", action="store_const", const="none", help="the same as --tta none")
    parser.add_argument(
        "--postprocess", action=argparse.BooleanOptionalAction, default=None,
        help=f"keep only the cell at the image centre and fill its holes {recorded.format('off')}",
    )
    parser.add_argument(
        "--precision", choices=PRECISIONS, default=None,
        help=f"bfloat16 is faster on CPUs with native bfloat16; auto: bfloat16 there, else float32 {recorded.format('float32')}",
    )
    parser.add_argument(
        "--engine", choices=ENGINES, default=None,
        help="what runs the model: openvino is faster on CPUs (it converts the model once and caches it in "
        "$WBCSEG_CACHE_DIR or ~/.cache/wbcseg); tensorflow can use a GPU; auto: tensorflow where it sees a GPU, "
        f"else openvino {recorded.format('tensorflow')}",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--workers", type=_positive(int), metavar="N",
        help="spread the images over N Dask worker processes on this machine (needs wbcseg[dask])",
    )
    where.add_argument(
        "--scheduler", metavar="ADDRESS",
        help="spread the images over the workers of a running Dask scheduler, e.g. tcp://node1:8786 (needs wbcseg[dask] "
        "and the same paths on every worker)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wbcseg", description="White blood cell segmentation with an InceptionV3 U-Net.")
    commands = parser.add_subparsers(dest="command", required=True)

    fetch = commands.add_parser("fetch", help="download (or copy from a mirror) and verify the dataset")
    fetch.add_argument("--out", default="data/raw", help="where the verified dataset goes (default: data/raw)")
    fetch.add_argument("--source", help="local mirror directory (default: $WBC_DATA_SOURCE, else data.source of params.yaml, else GitHub)")
    fetch.add_argument("--params", default="params.yaml", help="read for data.source when no mirror is named (optional)")
    fetch.set_defaults(func=_fetch)

    check = commands.add_parser("check", help="check params.yaml, the data source and every lab dataset, file by file (the first stage of dvc.yaml)")
    check.add_argument("--params", default="params.yaml")
    check.add_argument("--out", help="a file to write when everything is usable (the stage's output)")
    check.set_defaults(func=_check)

    notebook = commands.add_parser("notebook", help="run one pipeline notebook with papermill and render it to HTML")
    notebook.add_argument("name", help="notebook name without .ipynb, e.g. 03_train")
    notebook.add_argument("--variant", help="the variant of params.yaml to run it for (train and evaluate notebooks)")
    notebook.add_argument("--params", default="params.yaml")
    notebook.set_defaults(func=_notebook)

    predict = commands.add_parser("predict", help="segment new images with a trained model")
    _predict_arguments(predict)
    predict.set_defaults(func=_predict)

    export = commands.add_parser("export", help="package a trained model for others (a bioimage.io model zoo .zip)")
    export.add_argument("model", metavar="MODEL_DIR", help="a trained model directory (model.keras + model_card.json)")
    export.add_argument("--format", choices=["bioimageio"], default="bioimageio", help="package format (default: bioimageio)")
    export.add_argument("--out", required=True, metavar="ZIP", help="the .zip to write")
    export.add_argument("--sample", required=True, metavar="IMAGE", help="an RGB crop of one cell: the package's test input and cover")
    export.add_argument("--author", action="append", metavar="NAME", help="an author of the model (repeatable)")
    export.add_argument("--repository", metavar="URL", help="public URL of this code, cited and linked in the package")
    export.add_argument("--check", action="store_true", help="then run bioimageio.core's test routine on the package")
    export.set_defaults(func=_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except WbcsegError as exc:
        for problem in str(exc).splitlines():  # one line per problem (a lab dataset's bad files)
            print(f"wbcseg {args.command}: error: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"wbcseg {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
