"""The adaptive policy: Thompson sampling per segment over the strategies the book allows it, on the
driver (one row per segment x strategy)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from genre_spark.config import FeedbackSettings
from genre_spark.errors import ConfigError
from genre_spark.feedback.state import Arm, load_arms
from genre_spark.ranking import Chooser
from genre_spark.storage import TableStore
from genre_spark.strategy import Context, StrategyBook, allowed_strategies


def context_key(ctx: Context) -> str:
    """The state's context of a run: ``weekday/morning``, ``weekend/any`` (no --context-hour)."""
    return f"{ctx.day}/{ctx.hour_band or 'any'}"


def selection_rng(settings: FeedbackSettings, as_of: dt.date) -> np.random.Generator:
    """The seeded generator of one run's selection (same config and date, same picks)."""
    return np.random.default_rng([settings.seed, as_of.toordinal()])


def thompson_select(
    arms: Iterable[Arm],
    allowed: Mapping[int, Sequence[str]],
    settings: FeedbackSettings,
    rng: np.random.Generator,
) -> dict[int, str]:
    """The strategy per segment: a uniform pick with probability ``min(1, floor x n)`` among the segment's n
    allowed strategies, else the one with the highest posterior draw (ties: first listed). Allowed strategies
    without a state row draw from the prior. Segments are visited in id order, so a seeded ``rng`` replays."""
    posterior = {(a.segment_id, a.strategy_id): (a.alpha, a.beta) for a in arms}
    prior = (settings.prior_alpha, settings.prior_beta)
    picks: dict[int, str] = {}
    for segment in sorted(allowed):
        names = list(dict.fromkeys(allowed[segment]))
        if not names:
            raise ConfigError(f"segment {segment} allows no strategy")
        explore = rng.random() < min(1.0, settings.exploration_floor * len(names))
        params = np.array([posterior.get((segment, n), prior) for n in names], dtype=float)
        draws = rng.beta(params[:, 0], params[:, 1])
        picks[segment] = names[int(rng.integers(len(names)))] if explore else names[int(np.argmax(draws))]
    return picks


def segment_rng(settings: FeedbackSettings, as_of: dt.date, segment_id: int) -> np.random.Generator:
    """The seeded generator of one segment's pick (independent of the order segments are visited in)."""
    return np.random.default_rng([settings.seed, as_of.toordinal(), segment_id])


def adaptive_chooser(
    book: StrategyBook, arms: Iterable[Arm], settings: FeedbackSettings, as_of: dt.date
) -> Chooser:
    """Thompson sampling per segment among its allowed strategies (:func:`~genre_spark.strategy.
    allowed_strategies`), from ``arms`` (one context's posteriors; missing arms draw from the prior)."""
    known = list(arms)

    def choose(segment_id: int, segment_label: str) -> str:
        allowed = {segment_id: allowed_strategies(book, segment_id, segment_label)}
        return thompson_select(known, allowed, settings, segment_rng(settings, as_of, segment_id))[segment_id]

    return choose


def adaptive_chooser_from_store(
    store: TableStore, book: StrategyBook, settings: FeedbackSettings, ctx: Context
) -> Chooser:
    """The adaptive chooser of a ranking run in ``ctx``, from ``strategy_state`` as of ``ctx.as_of``."""
    return adaptive_chooser(book, load_arms(store, context_key(ctx), ctx.as_of), settings, ctx.as_of)
