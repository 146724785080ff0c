"""Feedback: served lists and real purchases become feedback events, which update a Beta-Bernoulli posterior
per (segment, context, strategy), and Thompson sampling picks the next strategy per segment (issue 6).

- :func:`feedback_from_purchases`: one ``impression`` per served item, one ``purchase`` where the user bought
  that item in the feedback window (Spark built-ins).
- :func:`split_feedback`: feedback about users or items a run never served is quarantined (``quarantine``
  contract, rule ids below), never dropped: ``count(in) == count(valid) + count(quarantined)``.
- :func:`arm_outcomes` and :func:`update_strategy_state`: per (segment, strategy), impressions are the served
  items with an impression event and conversions those of them also bought; the state keeps decayed sums
  (``impressions' = decay x impressions + new``, same for conversions) and
  ``alpha = prior_alpha + conversions``, ``beta = prior_beta + impressions - conversions``.
- :func:`thompson_select`: on the driver, over one row per segment x strategy: with probability
  ``floor x n`` a uniform pick among the n allowed strategies, else the strategy with the highest draw from
  its posterior; so every allowed strategy is picked with probability >= ``exploration_floor``.
- :func:`adaptive_chooser`: the ranking's :data:`~genre_spark.ranking.Chooser` of the adaptive policy: per
  segment, :func:`thompson_select` over the strategies the book allows it (``adaptive:`` in strategies.yaml).
- :func:`run_feedback`: the feedback step for the lists served as of T: purchases in ``[T, T + window)``
  (and any incoming feedback rows) -> ``feedback_events`` + ``quarantine``, then ``strategy_state``.
"""

from genre_spark.feedback.chooser import (
    adaptive_chooser,
    adaptive_chooser_from_store,
    context_key,
    segment_rng,
    selection_rng,
    thompson_select,
)
from genre_spark.feedback.events import (
    BAD_EVENT_TYPE,
    FEEDBACK_RULES,
    UNKNOWN_USER,
    UNSERVED_ITEM,
    FeedbackSplit,
    feedback_from_purchases,
    split_feedback,
)
from genre_spark.feedback.stage import PURCHASES_SOURCE, STAGE, FeedbackReport, run_feedback
from genre_spark.feedback.state import (
    CONTEXT,
    Arm,
    arm_outcomes,
    arms_from_rows,
    current_state,
    load_arms,
    posterior_step,
    update_strategy_state,
)

__all__ = [
    "BAD_EVENT_TYPE",
    "CONTEXT",
    "FEEDBACK_RULES",
    "PURCHASES_SOURCE",
    "STAGE",
    "UNKNOWN_USER",
    "UNSERVED_ITEM",
    "Arm",
    "FeedbackReport",
    "FeedbackSplit",
    "adaptive_chooser",
    "adaptive_chooser_from_store",
    "arm_outcomes",
    "arms_from_rows",
    "context_key",
    "current_state",
    "feedback_from_purchases",
    "load_arms",
    "posterior_step",
    "run_feedback",
    "segment_rng",
    "selection_rng",
    "split_feedback",
    "thompson_select",
    "update_strategy_state",
]
