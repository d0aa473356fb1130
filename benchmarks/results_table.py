"""Print the held-out results of the last `dvc repro` as the README's markdown table.

    python benchmarks/results_table.py [--root .]

One row per model and test dataset: mean Dice ± standard deviation over the test images at native
resolution, per target (whole cell, nucleus, cytoplasm). It reads reports/comparison.csv.
"""

import argparse

import pandas as pd

from wbcseg.paths import stage_paths
from wbcseg.report import results_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=".", help="the repository root (default: .)")
    args = parser.parse_args()
    table = results_table(pd.read_csv(stage_paths(args.root)["reports"] / "comparison.csv"))
    print(table.to_markdown(index=False))


if __name__ == "__main__":
    main()
