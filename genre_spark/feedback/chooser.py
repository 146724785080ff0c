"""The adaptive policy: Thompson sampling per segment over the strategies the book allows it, on the
driver, from the arms of ``strategy_state`` (keyed by segment label and context)."""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Sequence

import numpy as np

from genre_spark.config import FeedbackSettings
from genre_spark.errors import ConfigError
from genre_spark.feedback.state import Arm, beta_params, load_arms, prior_mean
from genre_spark.ranking import Chooser
from genre_spark.storage import TableStore
from genre_spark.strategy import Context, StrategyBook, allowed_strategies


def context_key(ctx: Context) -> str:
    """The state's context of a run: ``weekday/morning``, ``weekend/any`` (no --context-hour)."""
    return f"{ctx.day}/{ctx.hour_band or 'any'}"


def segment_rng(settings: FeedbackSettings, as_of: dt.date, segment: str) -> np.random.Generator:
    """The seeded generator of one segment's pick on one date (whatever order segments are visited in, and
    whatever id a refit gives the segment)."""
    return np.random.default_rng([settings.seed, as_of.toordinal(), zlib.crc32(segment.encode("utf-8"))])


def thompson_pick(
    arms: Sequence[Arm],
    segment: str,
    allowed: Sequence[str],
    settings: FeedbackSettings,
    rng: np.random.Generator,
) -> str:
    """One segment's strategy: a uniform pick with probability ``min(1, floor x n)`` among its n allowed
    strategies, else the one with the highest draw from its Beta posterior (``arms``: one context's; a
    strategy without evidence in the segment draws from its prior, :func:`prior_mean`). Ties: first listed."""
    names = list(dict.fromkeys(allowed))
    if not names:
        raise ConfigError(f"segment {segment!r} allows no strategy")
    evidence = {a.strategy_id: (a.impressions, a.conversions) for a in arms if a.segment == segment}
    explore = rng.random() < min(1.0, settings.exploration_floor * len(names))
    params = np.array(
        [
            beta_params(*evidence.get(n, (0.0, 0.0)), prior_mean(arms, segment, n, settings), settings)
            for n in names
        ],
        dtype=float,
    )
    draws = rng.beta(params[:, 0], params[:, 1])
    return names[int(rng.integers(len(names)))] if explore else names[int(np.argmax(draws))]


def adaptive_chooser(
    book: StrategyBook, arms: Sequence[Arm], settings: FeedbackSettings, ctx: Context
) -> Chooser:
    """Thompson sampling per segment among its allowed strategies (:func:`~genre_spark.strategy.
    allowed_strategies`), from the ``arms`` of ``ctx``'s context (other contexts' arms are ignored)."""
    mine = [a for a in arms if a.context == context_key(ctx)]

    def choose(segment_id: int, segment_label: str) -> str:
        allowed = allowed_strategies(book, segment_id, segment_label)
        return thompson_pick(
            mine, segment_label, allowed, settings, segment_rng(settings, ctx.as_of, segment_label)
        )

    return choose


def adaptive_chooser_from_store(
    store: TableStore, book: StrategyBook, settings: FeedbackSettings, ctx: Context
) -> Chooser:
    """The adaptive chooser of a ranking run in ``ctx``, from ``strategy_state`` as known on ``ctx.as_of``."""
    return adaptive_chooser(book, load_arms(store, ctx.as_of, settings), settings, ctx)
