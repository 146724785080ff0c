"""The warehouse as of a date: what the stages may read about the past, written once.

"Before the as-of date" means event time strictly before 00:00 UTC of that date; the catalog as of the date
holds the items first seen before it. A purchase is a ``purchase`` event of a product (``items.is_product``).
:class:`History` is that view: a run builds it once per date (``RunContext.history``) and hands it to the
features, candidates, scoring, the learned ranker and ranking; evaluation, replay and the ranker's labels read
the windows after a date with :func:`purchases_between`. No stage cuts events by date on its own, so none
can see a day further than another.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.storage import TableStore

YEAR_DAYS = 364  # "a year earlier": 52 weeks back, the same weekday (seasonal features and candidates)
PURCHASE_COLUMNS = (S.USER_ID, S.ITEM_ID, S.ORDER_ID, S.EVENT_TS, S.QUANTITY, S.UNIT_PRICE)


def midnight(day: dt.date) -> Column:
    """00:00 UTC of ``day`` as a timestamp literal (the session time zone is UTC)."""
    return F.lit(day.isoformat()).cast("timestamp")


def days_before(as_of: dt.date, ts: str | Column) -> Column:
    """Whole days from the event's date to ``as_of`` (1 for an event on the day before ``as_of``)."""
    return F.datediff(F.lit(as_of), F.to_date(ts))


def decay(days: Column, half_life: float) -> Column:
    """0.5 ^ (days / half_life): the weight of evidence ``days`` old."""
    return F.pow(F.lit(0.5), days / F.lit(half_life))


def items_as_of(items: DataFrame, as_of: dt.date) -> DataFrame:
    """The catalog as a run as of ``as_of`` sees it: an item first seen on or after that date does not
    exist yet (catalog items without any event, null ``first_seen_ts``, are listed from the start).
    Titles, prices and categories are the catalog's current ones."""
    seen = F.col(S.FIRST_SEEN_TS)
    return items.filter(seen.isNull() | (seen < midnight(as_of)))


def purchases_between(events: DataFrame, items: DataFrame, start: dt.date | None, end: dt.date) -> DataFrame:
    """Purchase lines of products in ``[start, end)`` (no start: everything before ``end``):
    user_id, item_id, order_id, event_ts, quantity, unit_price."""
    products = items.filter(F.col(S.IS_PRODUCT)).select(S.ITEM_ID)
    ts = F.col(S.EVENT_TS)
    when = (ts < midnight(end)) if start is None else (ts >= midnight(start)) & (ts < midnight(end))
    return (
        events.filter((F.col(S.EVENT_TYPE) == S.PURCHASE) & when & F.col(S.USER_ID).isNotNull())
        .join(F.broadcast(products), S.ITEM_ID)
        .select(*PURCHASE_COLUMNS)
    )


@dataclass(frozen=True)
class History:
    """What a run as of ``as_of`` may see (lazy frames): every event before the date and the catalog as of
    it. :meth:`of` makes the cut; :meth:`read` reads the warehouse's tables through it."""

    as_of: dt.date
    events: DataFrame  # events of every type strictly before as_of
    items: DataFrame  # items_as_of: the catalog without the items first seen on or after as_of

    @classmethod
    def of(cls, events: DataFrame, items: DataFrame, as_of: dt.date) -> History:
        return cls(as_of, events.filter(F.col(S.EVENT_TS) < midnight(as_of)), items_as_of(items, as_of))

    @classmethod
    def read(cls, store: TableStore, as_of: dt.date) -> History:
        return cls.of(store.read_table(S.EVENTS), store.read_table(S.ITEMS), as_of)

    @property
    def products(self) -> DataFrame:
        return self.items.filter(F.col(S.IS_PRODUCT))

    def purchases(self) -> DataFrame:
        """Purchase lines of products before the date (see :func:`purchases_between`)."""
        return purchases_between(self.events, self.items, None, self.as_of)

    def of_type(self, event_type: str) -> DataFrame:
        """The events of one type (purchase, return, ...) before the date, products or not."""
        return self.events.filter(F.col(S.EVENT_TYPE) == event_type)


def purchase_history(purchases: DataFrame) -> DataFrame:
    """(user_id, item_id, orders, last): per user and item bought, the distinct orders and the latest
    purchase. Buy-again, the recent anchors and ALS's implicit ratings all read this one aggregation."""
    return purchases.groupBy(S.USER_ID, S.ITEM_ID).agg(
        F.countDistinct(S.ORDER_ID).alias("orders"), F.max(S.EVENT_TS).alias("last")
    )


def bought_pairs(purchases: DataFrame) -> DataFrame:
    """Distinct (user_id, item_id) of purchase lines: what each user bought (a truth set, an exclusion)."""
    return purchases.select(S.USER_ID, S.ITEM_ID).distinct()
