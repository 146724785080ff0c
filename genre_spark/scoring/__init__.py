"""Language-model scoring: the "LLM" of the GENRE loop.

``models`` (pure transformer inference), ``scorers`` (the Scorer interface and its three kinds),
``udfs`` (batched pandas UDFs around them), ``texts`` (profile and item texts in Spark) and ``stage``
(the scoring stage writing ``scores``).
"""

from genre_spark.scoring.stage import ScoringReport, run_scoring

__all__ = ["ScoringReport", "run_scoring"]
