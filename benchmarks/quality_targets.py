"""Print the quality targets against what the last `dvc repro` reached.

    python benchmarks/quality_targets.py [--root .]

Native-resolution Dice on the held-out test split, per variant, dataset and target, against
`compare.targets` of params.yaml, and `main` against `original` and the classical baseline; a
target not met is shown with its gap. It reads reports/quality_targets.csv, written by 05_compare,
and trains nothing: never tune on these.
"""

import argparse

import pandas as pd

from wbcseg.paths import stage_paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=".", help="the repository root (default: .)")
    args = parser.parse_args()
    path = stage_paths(args.root)["reports"] / "quality_targets.csv"
    table = pd.read_csv(path)
    print(f"Quality targets ({path}):")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    print(f"{int(table['met'].sum())} of {len(table)} met")


if __name__ == "__main__":
    main()
