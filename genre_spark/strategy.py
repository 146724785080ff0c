"""Strategies (``conf/strategies.yaml``) and their selection per segment and time context.

A strategy says how a list is put together (source and scorer weights, diversity, business rules);
selection rules map (segment, weekday/weekend, hour band, campaign window) to a strategy, the most
specific matching rule winning. Everything here is small and runs on the driver: one decision per
segment, joined to users in Spark by the ranking stage.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from genre_spark.config import (
    CANDIDATE_SOURCES,
    SCORER_NAMES,
    _Strict,
    check_named_values,
    parse_model,
    yaml_mapping,
)
from genre_spark.errors import ConfigError

DayKind = Literal["weekday", "weekend"]
HourBand = Literal["night", "morning", "afternoon", "evening"]


class StrategyRules(_Strict):
    exclude_returned: bool
    exclude_recently_bought_days: int = Field(ge=0)
    exclude_recently_bought_categories: list[int]
    max_price_ratio: float | None = Field(gt=0)
    campaign_items: list[str]  # must appear in every list of this strategy ...
    campaign_slots: int = Field(ge=0)  # ... using at most this many of the k places (first listed first)


class Strategy(_Strict):
    description: str
    source_weights: dict[str, float]
    scorer_weights: dict[str, float]
    max_per_category: int | None = Field(ge=1)
    rules: StrategyRules
    # learned: the learned ranker's order (discriminator stage, ranker_scores); blend: the weighted sources
    # (+ scorers) set by hand
    ranker: Literal["blend", "learned"] = "blend"

    @field_validator("source_weights")
    @classmethod
    def _sources(cls, weights: dict[str, float]) -> dict[str, float]:
        check_named_values(weights, CANDIDATE_SOURCES, kind="candidate source", what="source weights")
        if not any(w > 0 for w in weights.values()):
            raise ValueError("at least one source needs a positive weight")
        return weights

    @field_validator("scorer_weights")
    @classmethod
    def _scorers(cls, weights: dict[str, float]) -> dict[str, float]:
        check_named_values(weights, SCORER_NAMES, kind="scorer", what="scorer weights")
        return weights


# YAML gives a date for 2011-11-14 and a string for "2011-11-14": accept both.
LaxDate = Annotated[dt.date, Field(strict=False)]


class Campaign(_Strict):
    start: LaxDate
    end: LaxDate

    @model_validator(mode="after")
    def _ordered(self) -> Campaign:
        if self.end < self.start:
            raise ValueError(f"campaign ends ({self.end}) before it starts ({self.start})")
        return self


class SelectionRule(_Strict):
    strategy: str
    segment: str | int | None = None  # segment label or id
    day: DayKind | None = None
    hour_band: HourBand | None = None
    campaign: Campaign | None = None

    @property
    def specificity(self) -> int:
        return sum(c is not None for c in (self.segment, self.day, self.hour_band, self.campaign))


class AdaptiveRules(_Strict):
    """Which strategies Thompson sampling may pick per segment (``feedback.adaptive``)."""

    allowed: dict[str | int, list[str]]  # segment label or id -> its strategies (an id wins over a label)
    default_allowed: list[str]  # segments not listed in ``allowed``


class StrategyBook(_Strict):
    strategies: dict[str, Strategy]
    selection: list[SelectionRule]
    default: str
    adaptive: AdaptiveRules | None = None  # None: every strategy is allowed for every segment

    @model_validator(mode="after")
    def _known_names(self) -> StrategyBook:
        names = sorted(self.strategies)
        for i, rule in enumerate(self.selection):
            if rule.strategy not in self.strategies:
                raise ValueError(f"selection[{i}] names strategy '{rule.strategy}'; valid choices: {names}")
        if self.default not in self.strategies:
            raise ValueError(f"default names strategy '{self.default}'; valid choices: {names}")
        if self.adaptive is not None:
            lists = {f"adaptive.allowed.{k}": v for k, v in self.adaptive.allowed.items()}
            lists["adaptive.default_allowed"] = self.adaptive.default_allowed
            for key, allowed in lists.items():
                if not allowed:
                    raise ValueError(f"{key} allows no strategy; name at least one of {names}")
                unknown = [n for n in allowed if n not in self.strategies]
                if unknown:
                    raise ValueError(f"{key} names unknown strategy {unknown}; valid choices: {names}")
        return self


def load_strategies(path: str | Path | None = None) -> StrategyBook:
    """The strategy file (the packaged ``conf/strategies.yaml`` when ``path`` is None), parsed strictly."""
    if path is None:
        origin = "<packaged strategies.yaml>"
        text = resources.files("genre_spark").joinpath("strategies.yaml").read_text(encoding="utf-8")
    else:
        origin = str(path)
        if not Path(path).is_file():
            raise ConfigError(f"strategy file {origin!r} does not exist")
        text = Path(path).read_text(encoding="utf-8")
    return parse_model(StrategyBook, yaml_mapping(text, origin), origin)


@dataclass(frozen=True)
class Context:
    as_of: dt.date
    hour_band: str | None  # None when no --context-hour was given: hour-band rules do not match

    @property
    def day(self) -> DayKind:
        return "weekend" if self.as_of.weekday() >= 5 else "weekday"


def context_for(as_of: dt.date, hour: int | None, hour_bands: Mapping[str, tuple[int, int]]) -> Context:
    if hour is None:
        return Context(as_of, None)
    if not 0 <= hour <= 23:
        raise ConfigError(f"--context-hour must be 0..23, got {hour}")
    band = next(name for name, (start, end) in hour_bands.items() if start <= hour < end)
    return Context(as_of, band)


def matches(rule: SelectionRule, segment_id: int, segment_label: str, ctx: Context) -> bool:
    if rule.segment is not None:
        wanted = rule.segment
        if not (wanted == segment_label or (isinstance(wanted, int) and wanted == segment_id)):
            return False
    if rule.day is not None and rule.day != ctx.day:
        return False
    if rule.hour_band is not None and rule.hour_band != ctx.hour_band:
        return False
    return rule.campaign is None or rule.campaign.start <= ctx.as_of <= rule.campaign.end


def allowed_strategies(book: StrategyBook, segment_id: int, segment_label: str) -> list[str]:
    """The strategies the adaptive policy may pick for a segment: ``adaptive.allowed`` by segment id, else
    by label, else ``adaptive.default_allowed``; every strategy of the book when there is no ``adaptive``."""
    if book.adaptive is None:
        return list(book.strategies)
    allowed = book.adaptive.allowed
    for key in (segment_id, segment_label):
        if key in allowed:
            return list(allowed[key])
    return list(book.adaptive.default_allowed)


def select_strategy(book: StrategyBook, segment_id: int, segment_label: str, ctx: Context) -> str:
    """The strategy of the most specific matching rule (ties: the rule listed first), else the default."""
    best: SelectionRule | None = None
    for rule in book.selection:
        if matches(rule, segment_id, segment_label, ctx) and (
            best is None or rule.specificity > best.specificity
        ):
            best = rule
    return book.default if best is None else best.strategy


NEW_ITEMS_DAYS = 365_000  # exclude_recently_bought_days that reaches back to any purchase


def new_items_book(book: StrategyBook) -> StrategyBook:
    """The new-items mode: the same strategies, each also excluding every item the user bought before."""
    strategies = {
        name: s.model_copy(
            update={
                "rules": s.rules.model_copy(
                    update={
                        "exclude_recently_bought_days": NEW_ITEMS_DAYS,
                        "exclude_recently_bought_categories": [],
                    }
                )
            }
        )
        for name, s in book.strategies.items()
    }
    return book.model_copy(update={"strategies": strategies})


def is_new_items(strategy: Strategy) -> bool:
    """The strategy leaves out every item the user bought before (the new-items mode)."""
    rules = strategy.rules
    return (
        rules.exclude_recently_bought_days >= NEW_ITEMS_DAYS and not rules.exclude_recently_bought_categories
    )


def with_ranker(book: StrategyBook, ranker: Literal["blend", "learned"]) -> StrategyBook:
    """The same strategies, each ordering its candidates with ``ranker``."""
    strategies = {name: s.model_copy(update={"ranker": ranker}) for name, s in book.strategies.items()}
    return book.model_copy(update={"strategies": strategies})
