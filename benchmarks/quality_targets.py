"""Print the quality targets of the default model against what the last `dvc repro` reached.

    python benchmarks/quality_targets.py [reports/main/summary.csv]

Native-resolution Dice on the held-out test split, per dataset and target; a target not met is
shown with its gap. It reads the evaluation's summary and trains nothing: never tune on these.
"""

import sys

import pandas as pd

from wbcseg.evaluate import quality_targets_table


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else "reports/main/summary.csv"
    table = quality_targets_table(pd.read_csv(path))
    print(f"Quality targets of the default model ({path}):")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    print(f"{int(table['met'].sum())} of {len(table)} met")


if __name__ == "__main__":
    main()
