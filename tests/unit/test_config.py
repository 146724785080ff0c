from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from genre_spark.config import default_config_text, default_run_id, load_settings
from genre_spark.errors import ConfigError
from genre_spark.strategy import load_strategies

ROOT = Path(__file__).resolve().parents[2]


def test_packaged_defaults_are_conf_default_yaml() -> None:
    assert default_config_text() == (ROOT / "conf" / "default.yaml").read_text(encoding="utf-8")


def test_profiles_in_conf_parse() -> None:
    profiles = sorted(p for p in (ROOT / "conf").glob("*.yaml") if p.name != "strategies.yaml")
    assert profiles, "conf/ holds no YAML profile"
    for profile in profiles:
        settings = load_settings([profile])
        assert settings.storage.warehouse


def test_files_and_overrides_merge_in_order(tmp_path: Path) -> None:
    extra = tmp_path / "extra.yaml"
    extra.write_text("storage:\n  warehouse: /from/file\nspark:\n  shuffle_partitions: 3\n")
    settings = load_settings([extra], ["storage.warehouse=/from/override", "spark.conf.spark.x=1"])
    assert settings.storage.warehouse == "/from/override"
    assert settings.spark.shuffle_partitions == 3
    assert settings.spark.conf["spark.x"] == "1"  # YAML parses 1 as int; conf values are strings
    assert settings.ingest.sources, "defaults not kept under a partial file"


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("storage.backend=lakehouse", ["storage.backend", '"lakehouse"', "'auto', 'embedded' or 'delta'"]),
        ("storage.bakend=embedded", ["storage.bakend", "unknown key", "backend, catalog, database"]),
        ("spark.shuffle_partitions=many", ["spark.shuffle_partitions", '"many"', "integer"]),
        ("spark.shuffle_partitions=0", ["spark.shuffle_partitions", "greater than 0"]),
        ("spark.ui_enabled=maybe", ["spark.ui_enabled", '"maybe"', "boolean"]),
        (
            "ingest.sources.online_retail_2010_2011.format=xml",
            ["ingest.sources.online_retail_2010_2011.format", '"xml"', "'csv', 'parquet' or 'delta'"],
        ),
        (
            "ingest.sources.online_retail_2010_2011.columns.colour=Colour",
            ["ingest.sources.online_retail_2010_2011.columns", "colour", "valid choices", "user_id"],
        ),
        (
            "ingest.sources.online_retail_2010_2011.paht=x.csv",
            ["ingest.sources.online_retail_2010_2011.paht", "unknown key", "path"],
        ),
        ("ingest.non_product_patterns=['(unclosed']", ["ingest.non_product_patterns", "(unclosed"]),
    ],
)
def test_bad_config_names_key_value_and_choices(override: str, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings([], [override])
    for fragment in fragments:
        assert fragment in str(err.value), f"{fragment!r} not in: {err.value}"


def test_source_missing_a_required_column_mapping() -> None:
    with pytest.raises(ConfigError, match="needs a source column for \\['user_id'\\]"):
        load_settings(
            [],
            [
                "ingest.sources.online_retail_2010_2011.columns={order_id: A, item_id: B, "
                "quantity: C, event_ts: D, unit_price: E}"
            ],
        )


@pytest.mark.parametrize("override", ["novalue", "=x", "storage.warehouse.deeper=x"])
def test_malformed_overrides(override: str) -> None:
    with pytest.raises(ConfigError, match="override"):
        load_settings([], [override])


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings([tmp_path / "nope.yaml"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("storage: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings([bad])
    twice = tmp_path / "twice.yaml"
    twice.write_text("spark:\n  shuffle_partitions: 4\n  log_level: WARN\n  shuffle_partitions: 8\n")
    with pytest.raises(
        ConfigError, match=r"twice.yaml: .*key 'shuffle_partitions' repeated \(first on line 2\)"
    ):
        load_settings([twice])


def test_the_ranker_uses_lm_scores_exactly_when_a_scorer_is_on() -> None:
    default = load_settings([])
    assert not default.scoring.scorers() and default.discriminator.without == ["segment", "season", "lm"]
    on = load_settings([], ["scoring.bi_encoder.enabled=true"])
    assert list(on.scoring.scorers()) == ["bi_encoder"] and on.discriminator.without == ["segment", "season"]
    chosen = load_settings([], ["scoring.bi_encoder.enabled=true", "discriminator.without=[segment,lm]"])
    assert chosen.discriminator.without == ["segment", "lm"]


def test_run_id_is_stable_and_follows_config() -> None:
    a = load_settings([])
    b = load_settings([])
    c = load_settings([], ["spark.shuffle_partitions=7"])
    day = dt.date(2011, 12, 9)
    assert default_run_id(a, day) == default_run_id(b, day)
    assert default_run_id(a, day) != default_run_id(c, day)
    assert default_run_id(a, day).startswith("2011-12-09-")


def test_the_stage_fingerprint_follows_only_what_the_stages_read() -> None:
    base = load_settings([]).stage_fingerprint()
    after_the_stages = [
        "discriminator.n_estimators=7",
        "evaluation.ablations=false",
        "spark.shuffle_partitions=7",
    ]
    assert load_settings([], after_the_stages).stage_fingerprint() == base
    for read in ["candidates.min_co_count=9", "features.top_categories=4", "segments.k_max=5"]:
        assert load_settings([], [read]).stage_fingerprint() != base, read


def test_run_id_follows_the_strategies_and_the_context() -> None:
    """A changed weight in the strategy file or another hour band is another run, not a rerun."""
    settings, day = load_settings([]), dt.date(2011, 12, 9)
    book = load_strategies()
    edited = book.model_copy(deep=True)
    next(iter(edited.strategies.values())).source_weights["content"] = 0.123
    ids = {
        default_run_id(settings, day, book, None),
        default_run_id(settings, day, edited, None),
        default_run_id(settings, day, book, "morning"),
        default_run_id(settings, day, book, "evening"),
    }
    assert len(ids) == 4
    assert default_run_id(settings, day, book, "morning") == default_run_id(settings, day, book, "morning")


def test_cli_rejects_bad_config_before_spark_starts() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "genre_spark.cli", "run", "--set", "storage.backend=lakehouse"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # one line a scheduler can log
    assert "storage.backend" in lines[0] and "lakehouse" in lines[0]
    assert "SparkContext" not in proc.stdout + proc.stderr


def test_cli_rejects_a_bad_strategy_file_before_spark_starts(tmp_path: Path) -> None:
    bad = tmp_path / "strategies.yaml"
    bad.write_text(
        (ROOT / "conf" / "strategies.yaml").read_text().replace("max_per_category: 2", "max_per_categroy: 2")
    )
    proc = subprocess.run(
        [sys.executable, "-m", "genre_spark.cli", "run", "--set", f"strategies_file={bad}"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    assert "strategies.discovery.max_per_categroy" in proc.stderr and "unknown key" in proc.stderr
    assert "SparkContext" not in proc.stdout + proc.stderr


def test_cli_rejects_a_missing_scorer_model_before_spark_starts(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "genre_spark.cli",
            "scoring",
            "--set",
            "scoring.cross_encoder.enabled=true",
            "--set",
            "scoring.cross_encoder.model=/no/such/cross-encoder",
            "--set",
            f"storage.warehouse={tmp_path / 'wh'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "scoring.cross_encoder.model" in lines[0] and "/no/such/cross-encoder" in lines[0]
    assert "SparkContext" not in proc.stdout + proc.stderr and not (tmp_path / "wh").exists()


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        (
            "feedback.source={format: csv, path: x, columns: {user_id: u, item_id: i, event_type: t, "
            "event_ts: ts}}",
            "a feedback source maps run_id or as_of",
        ),
        (
            "feedback.source={format: csv, path: x, columns: {user_id: u, item_id: i, event_type: t, "
            "event_ts: ts, run_id: r, quantity: q}}",
            "unknown contract column(s) ['quantity'] for table 'feedback_events'",
        ),
        (
            "ingest.sources.log={table: feedback_events, format: csv, path: x, columns: {user_id: u, "
            "item_id: i, event_type: t, event_ts: ts, run_id: r}}",
            "sources.log: serving logs are read by the feedback stage (feedback.source)",
        ),
    ],
    ids=["no-list-column", "unknown-column", "log-as-ingest-source"],
)
def test_feedback_source_is_checked(override: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings([], [override])
    assert fragment in str(err.value), str(err.value)


def test_feedback_source_by_date() -> None:
    settings = load_settings(
        [],
        [
            "feedback.source={format: parquet, path: /logs, columns: {user_id: u, item_id: i, "
            "event_type: t, event_ts: ts, as_of: d}}"
        ],
    )
    assert settings.feedback.source is not None and settings.feedback.source.table == "feedback_events"
