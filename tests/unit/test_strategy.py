"""Strategy file validation and selection precedence (segment x weekday x hour band x campaign)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from genre_spark.errors import ConfigError
from genre_spark.strategy import Context, StrategyBook, context_for, load_strategies, select_strategy

ROOT = Path(__file__).resolve().parents[2]
HOURS = {"night": (0, 6), "morning": (6, 12), "afternoon": (12, 18), "evening": (18, 24)}
FRIDAY, SATURDAY = dt.date(2011, 12, 9), dt.date(2011, 12, 10)
RULES = {
    "exclude_returned": True,
    "exclude_recently_bought_days": 0,
    "exclude_recently_bought_categories": [],
    "max_price_ratio": None,
    "campaign_items": [],
    "campaign_slots": 0,
}


def book(selection: list[dict], default: str = "base") -> StrategyBook:  # type: ignore[type-arg]
    names = {"base", "a", "b", "c", "d", "e"}
    strategies = {
        n: {
            "description": n,
            "source_weights": {"als": 1.0},
            "scorer_weights": {},
            "max_per_category": 3,
            "rules": RULES,
        }
        for n in names
    }
    return StrategyBook.model_validate({"strategies": strategies, "selection": selection, "default": default})


def test_shipped_file_is_the_packaged_default() -> None:
    shipped = load_strategies(ROOT / "conf" / "strategies.yaml")
    assert load_strategies() == shipped
    assert shipped.default in shipped.strategies


def test_context() -> None:
    assert context_for(FRIDAY, 9, HOURS) == Context(FRIDAY, "morning")
    assert context_for(SATURDAY, None, HOURS).day == "weekend"
    assert context_for(FRIDAY, 23, HOURS).hour_band == "evening"
    with pytest.raises(ConfigError, match=r"--context-hour must be 0\.\.23, got 24"):
        context_for(FRIDAY, 24, HOURS)


def test_most_specific_rule_wins() -> None:
    campaign = {"start": dt.date(2011, 12, 1), "end": dt.date(2011, 12, 24)}
    b = book(
        [
            {"strategy": "a", "segment": "loyal"},
            {"strategy": "b", "segment": "loyal", "day": "weekend"},
            {"strategy": "c", "segment": "loyal", "day": "weekend", "hour_band": "evening"},
            {"strategy": "d", "campaign": campaign},
            {"strategy": "e", "segment": 7},
        ]
    )
    loyal = (1, "loyal")
    assert (
        select_strategy(b, *loyal, Context(FRIDAY, "morning")) == "a"
    )  # segment beats campaign? tie -> first
    assert select_strategy(b, *loyal, Context(SATURDAY, "morning")) == "b"
    assert select_strategy(b, *loyal, Context(SATURDAY, "evening")) == "c"
    assert select_strategy(b, *loyal, Context(SATURDAY, None)) == "b"  # no hour given: hour rules never match
    assert select_strategy(b, 2, "new", Context(FRIDAY, None)) == "d"  # only the campaign matches
    assert select_strategy(b, 2, "new", Context(dt.date(2011, 12, 25), None)) == "base"  # campaign over
    assert select_strategy(b, 7, "other", Context(dt.date(2012, 1, 5), None)) == "e"  # by segment id


def test_ties_go_to_the_rule_listed_first() -> None:
    b = book([{"strategy": "a", "day": "weekday"}, {"strategy": "b", "segment": "x"}])
    assert select_strategy(b, 0, "x", Context(FRIDAY, None)) == "a"
    b = book([{"strategy": "b", "segment": "x"}, {"strategy": "a", "day": "weekday"}])
    assert select_strategy(b, 0, "x", Context(FRIDAY, None)) == "b"


@pytest.mark.parametrize(
    ("edit", "fragments"),
    [
        (
            lambda d: d["strategies"]["win_back"]["source_weights"].update(bestsellers=1.0),
            ["strategies.win_back.source_weights", "bestsellers", "valid choices"],
        ),
        (
            lambda d: d["strategies"]["discovery"].update(max_per_categroy=2),
            ["strategies.discovery.max_per_categroy", "unknown key", "max_per_category"],
        ),
        (
            lambda d: d["strategies"]["balanced"]["rules"].update(max_price_ratio=-1),
            ["strategies.balanced.rules.max_price_ratio", "greater than 0"],
        ),
        (lambda d: d["selection"].append({"strategy": "nope", "segment": "x"}), ["'nope'", "valid choices"]),
        (
            lambda d: d["selection"].append({"strategy": "balanced", "day": "sunday"}),
            ["selection.", "day", "'weekday' or 'weekend'"],
        ),
        (
            lambda d: d["selection"].append(
                {"strategy": "balanced", "campaign": {"start": "2011-12-24", "end": "2011-12-01"}}
            ),
            ["campaign ends (2011-12-01) before it starts (2011-12-24)"],
        ),
        (lambda d: d.update(default="missing"), ["default names strategy 'missing'"]),
    ],
    ids=[
        "unknown-source",
        "typo-key",
        "bad-value",
        "unknown-strategy",
        "bad-day",
        "campaign-order",
        "default",
    ],
)
def test_bad_strategy_file_names_strategy_and_key(tmp_path: Path, edit: object, fragments: list[str]) -> None:
    data = yaml.safe_load((ROOT / "conf" / "strategies.yaml").read_text())
    edit(data)  # type: ignore[operator]
    path = tmp_path / "strategies.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        load_strategies(path)
    assert str(path) in str(err.value)
    for fragment in fragments:
        assert fragment in str(err.value), f"{fragment!r} not in {err.value}"
