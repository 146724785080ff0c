"""Feedback: what happened to served lists updates a Beta posterior per (segment label, context, strategy),
and Thompson sampling picks the next strategy per segment (the GENRE loop's last arrow).

- :func:`run_feedback` (the ``feedback`` stage of a run as of T): the serving log (``feedback.source``) or
  the purchases of listed items (derived from ``events``) on the lists of the ``window_days`` before T ->
  ``feedback_events`` + ``quarantine`` (every row lands in one, with a rule id), then ``strategy_state``.
- :func:`split_feedback`: feedback about lists, users or items a run never served, dated on or after the
  run, or already counted, is quarantined (rule ids below), never dropped.
- :func:`arm_outcomes` and :func:`update_arms`: per arm, the served items newly shown and newly bought
  (each counts once, a late purchase too), added to the arm's evidence decayed by its age
  (``half_life_days``); the prior is the segment's base rate times the strategy's lift across segments
  (:func:`prior_mean`).
- :func:`thompson_pick` / :func:`adaptive_chooser`: on the driver, per segment: with probability
  ``floor x n`` a uniform pick among its n allowed strategies, else the highest posterior draw.
"""

from genre_spark.feedback.chooser import (
    adaptive_chooser,
    adaptive_chooser_from_store,
    context_key,
    segment_rng,
    thompson_pick,
)
from genre_spark.feedback.events import (
    BAD_EVENT_TYPE,
    DUPLICATE,
    FEEDBACK_RULES,
    NOT_YET,
    UNKNOWN_LIST,
    UNKNOWN_USER,
    UNSERVED_ITEM,
    FeedbackSplit,
    feedback_from_purchases,
    split_feedback,
)
from genre_spark.feedback.stage import (
    LOG_SOURCE,
    PURCHASES_SOURCE,
    STAGE,
    FeedbackReport,
    run_feedback,
    served_lists,
)
from genre_spark.feedback.state import (
    CONTEXT,
    Arm,
    arm_outcomes,
    beta_params,
    current_state,
    load_arms,
    prior_mean,
    state_rows,
    update_arms,
)

__all__ = [
    "BAD_EVENT_TYPE",
    "CONTEXT",
    "DUPLICATE",
    "FEEDBACK_RULES",
    "LOG_SOURCE",
    "NOT_YET",
    "PURCHASES_SOURCE",
    "STAGE",
    "UNKNOWN_LIST",
    "UNKNOWN_USER",
    "UNSERVED_ITEM",
    "Arm",
    "FeedbackReport",
    "FeedbackSplit",
    "adaptive_chooser",
    "adaptive_chooser_from_store",
    "arm_outcomes",
    "beta_params",
    "context_key",
    "current_state",
    "feedback_from_purchases",
    "load_arms",
    "prior_mean",
    "run_feedback",
    "segment_rng",
    "served_lists",
    "split_feedback",
    "state_rows",
    "thompson_pick",
    "update_arms",
]
