"""genre-spark: batch top-K recommendations on Spark following the GENRE loop.

Library code never creates a Spark session: every stage takes one as its first argument.
Entry points (``genre_spark.cli`` and ``jobs/``) build the session from config.
"""

__version__ = "0.1.0"
