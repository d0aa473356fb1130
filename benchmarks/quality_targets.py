"""Print the quality targets of the default model against what the last `dvc repro` reached.

    python benchmarks/quality_targets.py [--root .]

Native-resolution Dice on the held-out test split, per dataset and target, against
`compare.targets` of params.yaml; a target not met is shown with its gap. It reads the evaluation's
summary and trains nothing: never tune on these.
"""

import argparse

import pandas as pd

from wbcseg.params import load_params
from wbcseg.paths import stage_paths
from wbcseg.report import quality_targets_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=".", help="the repository root (default: .)")
    args = parser.parse_args()
    paths = stage_paths(args.root, "main")
    table = quality_targets_table(pd.read_csv(paths["report"] / "summary.csv"), load_params(paths["params"])["compare"]["targets"])
    print(f"Quality targets of the default model ({paths['report'] / 'summary.csv'}):")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    print(f"{int(table['met'].sum())} of {len(table)} met")


if __name__ == "__main__":
    main()
