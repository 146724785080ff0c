"""Write the Databricks notebooks in notebooks/: refresh.py and one per stage of genre_spark.pipeline.STAGES.

python tools/make_notebooks.py           # (re)write them
python tools/make_notebooks.py --check   # exit 1 when one differs from what this writes (lists missing ones)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from genre_spark.notebook import REFRESH, notebook_source
from genre_spark.pipeline import STAGES

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def expected() -> dict[Path, str]:
    wanted = {NOTEBOOKS / f"{REFRESH}.py": notebook_source(None)}
    wanted.update({NOTEBOOKS / f"{stage}.py": notebook_source(stage) for stage in STAGES})
    return wanted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check they are up to date")
    args = parser.parse_args()
    stale, missing = [], []
    for path, text in expected().items():
        if not path.is_file():
            missing.append(path.name)
        elif path.read_text(encoding="utf-8") != text:
            stale.append(path.name)
        else:
            continue
        if not args.check:
            path.write_text(text, encoding="utf-8")
    if args.check:
        print(f"missing: {missing or 'none'}; differing: {stale or 'none'}")
        return 1 if stale else 0
    print(f"written: {missing + stale or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
