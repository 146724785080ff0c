"""Exit codes and error messages of the CLI: a library error is one line and its own code, anything else
is a bug and leaves with its traceback; both name the stage they happened in."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from types import SimpleNamespace

import pytest

from genre_spark import pipeline
from genre_spark.cli import report_error
from genre_spark.errors import ConfigError, WriteConflictError


def fake_context() -> SimpleNamespace:
    """What run_stages reads of a RunContext; the stage functions are replaced."""
    store = SimpleNamespace(write_log=[], partition_commit=lambda table, as_of: None)
    return SimpleNamespace(
        store=store, as_of=dt.date(2011, 12, 9), run_id="r1", stage_settings="s1", proposed_for="everyone"
    )


def failing(exc: Exception) -> Callable[[object], str]:
    """A stage function that raises ``exc``."""

    def stage(ctx: object) -> str:
        raise exc

    return stage


def test_a_bug_in_a_stage_exits_1_with_its_traceback_and_the_stage(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(pipeline.STAGES, "features", failing(ValueError("x must be positive")))
    with pytest.raises(ValueError) as info:
        pipeline.run_stages(fake_context(), ["features"])  # type: ignore[arg-type]
    assert report_error(info.value) == 1  # a ValueError is a bug, not a config error
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ValueError: x must be positive" in err
    assert "in stage 'features' as of 2011-12-09 (run r1)" in err
    assert "unexpected ValueError" in err


def test_a_library_error_is_one_line_with_its_code_and_stage(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(pipeline.STAGES, "ranking", failing(WriteConflictError("table 'recommendations'")))
    with pytest.raises(WriteConflictError) as info:
        pipeline.run_stages(fake_context(), ["ranking"])  # type: ignore[arg-type]
    assert report_error(info.value) == 5
    err = capsys.readouterr().err
    assert err == (
        "genre-spark: error: table 'recommendations' | in stage 'ranking' as of 2011-12-09 (run r1)\n"
    )


def test_only_a_config_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError) as info:
        pipeline.run_stages(fake_context(), ["featurs"])  # type: ignore[arg-type]
    assert report_error(info.value) == 2
    assert capsys.readouterr().err.startswith("genre-spark: error: unknown stage(s) ['featurs']")


def test_a_config_error_exits_2_in_one_line_before_spark_starts(capsys: pytest.CaptureFixture[str]) -> None:
    from genre_spark.cli import main

    assert main(["generate", "--users", "0", "--out", "gen"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["genre-spark: error: --users must be at least 1, got 0"]


def test_evaluate_runs_what_the_run_did_not_record_then_the_ranker(monkeypatch: pytest.MonkeyPatch) -> None:
    """`genre-spark evaluate`: the dated stages before the discriminator that `runs` does not record for the
    run id (and the undated ones whose tables are missing), then the ranker, then the evaluation."""
    from genre_spark import evaluation, refresh

    calls: list[object] = []
    monkeypatch.setattr(refresh, "completed_stages", lambda store, run_id: {"features", "segments"})
    monkeypatch.setattr(refresh, "run_once", lambda ctx, stages: calls.append(list(stages)) or "outcome")
    monkeypatch.setattr(
        refresh,
        "train_discriminator",
        lambda ctx, keep_features: calls.append(("ranker", keep_features)) or "fit",
    )
    monkeypatch.setattr(evaluation, "evaluate", lambda *args: calls.append("evaluate") or "report")
    store = SimpleNamespace(exists=lambda table: table != "item_embeddings")
    ctx = SimpleNamespace(
        store=store, run_id="r1", settings=SimpleNamespace(discriminator=SimpleNamespace(enabled=True))
    )
    for name in ("spark", "strategies", "context"):
        setattr(ctx, name, None)
    outcomes: list[object] = []
    assert refresh.evaluate_date(ctx, 100, outcomes.append) == "report"  # type: ignore[arg-type]
    # the ranker keeps the date's features: the evaluation reads them
    assert calls == [["enrich", "candidates", "scoring"], ("ranker", True), "evaluate"]
    assert outcomes == ["outcome"]


def test_evaluate_after_a_run_writes_the_dates_features_the_run_did_not_keep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from genre_spark import evaluation, refresh

    calls: list[object] = []
    monkeypatch.setattr(refresh, "completed_stages", lambda store, run_id: set(refresh.STAGES))
    monkeypatch.setattr(refresh, "run_once", lambda ctx, stages: calls.append(list(stages)))
    monkeypatch.setattr(refresh, "train_discriminator", lambda ctx, keep_features: calls.append("ranker"))
    monkeypatch.setattr(refresh, "write_date_features", lambda ctx: calls.append("features"))
    monkeypatch.setattr(evaluation, "evaluate", lambda *args: calls.append("evaluate") or "report")
    ctx = SimpleNamespace(
        store=SimpleNamespace(exists=lambda table: True),
        run_id="r1",
        settings=SimpleNamespace(discriminator=SimpleNamespace(enabled=True)),
        spark=None,
        strategies=None,
        context=None,
    )
    assert refresh.evaluate_date(ctx, 100) == "report"  # type: ignore[arg-type]
    assert calls == ["features", "evaluate"]
