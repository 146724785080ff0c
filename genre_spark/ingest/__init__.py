"""Ingest: raw sources validated into ``events``/``items``/``users``, bad rows into ``quarantine``."""

from genre_spark.ingest.stage import IngestReport, SourceCounts, run_ingest

__all__ = ["IngestReport", "SourceCounts", "run_ingest"]
