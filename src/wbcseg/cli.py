"""The `wbcseg` command line, thin over the package's modules."""

from __future__ import annotations

import argparse
import sys


def _fetch(args) -> int:
    from wbcseg.data import fetch
    from wbcseg.params import load_params

    # only data.source matters here; the full check (which loads TensorFlow) is left to the later stages
    source = args.source or load_params(args.params, check=False).get("data", {}).get("source")
    path = fetch(args.out, source)
    print(f"dataset verified at {path}")
    return 0


def _notebook(args) -> int:
    from wbcseg.notebooks import run_stage_notebook

    for path in run_stage_notebook(args.name, variant=args.variant, params_path=args.params):
        print(f"wrote {path}")
    return 0


def _predict(args) -> int:
    from wbcseg.predict import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    from wbcseg.predict import add_arguments

    parser = argparse.ArgumentParser(prog="wbcseg", description="White blood cell segmentation with an InceptionV3 U-Net.")
    commands = parser.add_subparsers(dest="command", required=True)

    fetch = commands.add_parser("fetch", help="download (or copy from a mirror) and verify the dataset")
    fetch.add_argument("--out", default="data/raw", help="where the verified dataset goes (default: data/raw)")
    fetch.add_argument("--source", help="local mirror directory (default: $WBC_DATA_SOURCE, data.source, or GitHub)")
    fetch.add_argument("--params", default="params.yaml")
    fetch.set_defaults(func=_fetch)

    notebook = commands.add_parser("notebook", help="run one pipeline notebook with papermill and render it to HTML")
    notebook.add_argument("name", help="notebook name without .ipynb, e.g. 03_train")
    notebook.add_argument("--variant", help="the variant of params.yaml to run it for (train and evaluation notebooks)")
    notebook.add_argument("--params", default="params.yaml")
    notebook.set_defaults(func=_notebook)

    predict = commands.add_parser("predict", help="segment new images with a trained model")
    add_arguments(predict)
    predict.set_defaults(func=_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    from wbcseg import WbcsegError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (WbcsegError, FileNotFoundError) as exc:
        print(f"wbcseg {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
