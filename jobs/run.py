"""Entry point for spark-submit: the whole pipeline (or --stage ...) for one as-of date.

spark-submit jobs/run.py --conf conf/local.yaml --as-of 2011-12-09
"""

import sys

from genre_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
