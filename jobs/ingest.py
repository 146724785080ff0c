"""Entry point for spark-submit: the ingest stage alone.

spark-submit jobs/ingest.py --conf conf/local.yaml --as-of 2011-12-09
"""

import sys

from genre_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest", *sys.argv[1:]]))
