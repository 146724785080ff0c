"""Configuration: YAML files merged over the packaged defaults, parsed once into frozen typed objects.

``conf/default.yaml`` is the single source of truth for every knob (the models below carry no
defaults of their own, so a knob cannot silently differ between the file and the code). A bad key,
type or choice raises :class:`ConfigError` naming the key, the value and the valid choices, before
any Spark session exists.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from genre_spark import schemas as S
from genre_spark.errors import ConfigError

# YAML has lists, not tuples: pairs accept a 2-item list (lax for the container only).
HourRange = Annotated[tuple[int, int], Field(strict=False)]
Bounds = Annotated[tuple[float | None, float | None], Field(strict=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class SparkSettings(_Strict):
    master: str | None
    app_name: str
    shuffle_partitions: int = Field(gt=0)
    ui_enabled: bool
    log_level: Literal["ERROR", "WARN", "INFO", "DEBUG"]
    conf: dict[str, str]


class StorageSettings(_Strict):
    warehouse: str
    backend: Literal["auto", "embedded", "delta"]
    # Catalog tables (native Delta only): <catalog>.<database>.<table>, or <database>.<table>.
    catalog: str | None
    database: str | None
    # Per-table location: a path/URI or a catalog table name; wins over warehouse and catalog.
    tables: dict[str, str]
    # Keep `recommendations` partitions of the last N days before the run's as-of date; null keeps all.
    retention_days: int | None = Field(gt=0)


class CsvOptions(_Strict):
    delimiter: str = ","
    encoding: str = "UTF-8"
    quote: str = '"'
    escape: str = '"'


# Contract columns a source may map, per target table; the required ones must be mapped.
SOURCE_COLUMNS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    S.EVENTS: (
        frozenset({S.ORDER_ID, S.ITEM_ID, S.QUANTITY, S.EVENT_TS, S.UNIT_PRICE, S.USER_ID}),
        frozenset({S.TITLE, S.COUNTRY, S.EVENT_TYPE}),
    ),
    S.ITEMS: (frozenset({S.ITEM_ID, S.TITLE}), frozenset({S.DESCRIPTION, S.UNIT_PRICE, S.CATEGORY_LABEL})),
    S.USERS: (frozenset({S.USER_ID}), frozenset({S.COUNTRY})),
    # serving logs: which list an event is about is its run id or its as-of date (one of them is mapped)
    S.FEEDBACK_EVENTS: (
        frozenset({S.USER_ID, S.ITEM_ID, S.EVENT_TYPE, S.EVENT_TS}),
        frozenset({S.RUN_ID, S.AS_OF}),
    ),
}


class SourceSettings(_Strict):
    table: Literal["events", "items", "users", "feedback_events"]
    format: Literal["csv", "parquet", "delta"]
    path: str
    columns: dict[str, str] = Field(description="contract column -> column name in the source")
    timestamp_format: str = "yyyy-MM-dd HH:mm:ss"
    csv: CsvOptions = CsvOptions()
    enabled: bool = True

    @field_validator("columns")
    @classmethod
    def _check_columns(cls, columns: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        table = info.data.get("table")
        if table is None:  # the table itself was invalid; that error is reported
            return columns
        required, optional = SOURCE_COLUMNS[table]
        unknown = sorted(set(columns) - required - optional)
        if unknown:
            raise ValueError(
                f"unknown contract column(s) {unknown} for table '{table}'; "
                f"valid choices: {sorted(required | optional)}"
            )
        missing = sorted(required - set(columns))
        if missing:
            raise ValueError(f"table '{table}' needs a source column for {missing}")
        return columns


class IngestSettings(_Strict):
    sources: dict[str, SourceSettings]
    cancellation_prefix: str
    fold_item_id_case: bool  # 82001S and 82001s are one item
    non_product_codes: list[str]
    non_product_patterns: list[str]

    @field_validator("non_product_patterns")
    @classmethod
    def _patterns_compile(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from exc
        return patterns

    @model_validator(mode="after")
    def _some_events_source(self) -> IngestSettings:
        for name, source in self.sources.items():
            if source.table == S.FEEDBACK_EVENTS:
                raise ValueError(
                    f"sources.{name}: serving logs are read by the feedback stage (feedback.source)"
                )
        if not any(s.enabled and s.table == S.EVENTS for s in self.sources.values()):
            raise ValueError("sources: at least one enabled source must feed table 'events'")
        return self


class EncoderSettings(_Strict):
    model: str = Field(description="'minilm' (packaged all-MiniLM-L6-v2) or a local model folder")
    batch_size: int = Field(gt=0)
    max_length: int = Field(gt=0)
    device: Literal["auto", "cpu", "cuda"]
    dtype: Literal["auto", "float32", "float16", "bfloat16"]


class EnrichSettings(_Strict):
    encoder: EncoderSettings
    n_categories: int = Field(ge=2)
    label_terms: int = Field(ge=1)
    min_term_length: int = Field(ge=1)
    seed: int
    kmeans_rows_per_partition: int = Field(ge=1)


class FeatureSettings(_Strict):
    hour_bands: dict[str, HourRange]
    top_categories: int = Field(ge=1)

    @field_validator("hour_bands")
    @classmethod
    def _bands_cover_the_day(cls, bands: dict[str, HourRange]) -> dict[str, HourRange]:
        if sorted(bands) != sorted(S.HOUR_BANDS):
            raise ValueError(f"hour bands must be named {list(S.HOUR_BANDS)}, got {sorted(bands)}")
        hours = sorted(h for start, end in bands.values() for h in range(start, end))
        if hours != list(range(24)):
            raise ValueError(f"hour bands must cover hours 0..23 exactly once as [start, end), got {bands}")
        return bands


class LabelRule(_Strict):
    label: str
    # feature -> [min, max] bounds on the segment's z-score (mean vs all users, in population std units);
    # null for an open side. All conditions must hold.
    when: dict[str, Bounds]


class SegmentSettings(_Strict):
    features: list[str] = Field(min_length=2)
    log_features: list[str]
    k_min: int = Field(ge=2)
    k_max: int = Field(ge=2)
    silhouette_sample: int = Field(gt=100)
    pca_components: int | None = Field(ge=2)
    pca_variance: float = Field(gt=0, le=1)
    max_iter: int = Field(gt=0)
    seed: int
    refit: Literal["always", "if_missing", "never"]
    plot_sample: int = Field(gt=0)
    labels: list[LabelRule]
    default_label: str

    @model_validator(mode="after")
    def _consistent(self) -> SegmentSettings:
        if self.k_max < self.k_min:
            raise ValueError(f"k_max ({self.k_max}) must be >= k_min ({self.k_min})")
        unknown = sorted(set(self.log_features) - set(self.features))
        if unknown:
            raise ValueError(f"log_features {unknown} are not in features {self.features}")
        for rule in self.labels:
            bad = sorted(set(rule.when) - set(self.features))
            if bad:
                raise ValueError(
                    f"label '{rule.label}' uses {bad}, which are not in features {self.features}"
                )
        return self


class AlsSettings(_Strict):
    rank: int = Field(gt=0)
    max_iter: int = Field(gt=0)
    reg_param: float = Field(ge=0)
    alpha: float = Field(gt=0)
    num_blocks: int = Field(gt=0)
    seed: int
    # a training cut-off's fit: its sample and a hash sample of the others, this many in all (None: everyone)
    max_fit_users: int | None = Field(default=None, gt=0)


class SimilarUserSettings(_Strict):
    neighbours: int = Field(gt=0)  # nearest users whose items a user is offered
    half_life_days: float = Field(gt=0)  # weight of a past order in the user's item vector
    max_buyers_per_item: int = Field(gt=1)  # buyers per item compared (the heaviest): bounds the user pairs
    # a neighbour offers its heaviest items only: bounds the rows scored (users x neighbours x items)
    items_per_neighbour: int | None = Field(default=None, gt=0)


CANDIDATE_SOURCES = S.CANDIDATE_SOURCES


def check_named_values(values: Mapping[str, float], valid: Sequence[str], *, kind: str, what: str) -> None:
    """Keys must be in ``valid`` and values >= 0 (source limits in config; source and scorer weights in
    strategies)."""
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise ValueError(f"unknown {kind}(s) {unknown}; valid choices: {list(valid)}")
    negative = {k: v for k, v in values.items() if v < 0}
    if negative:
        raise ValueError(f"{what} must be >= 0, got {negative}")


class CandidateSettings(_Strict):
    limits: dict[str, int]
    recency_half_life_days: float = Field(gt=0)
    popularity_window_days: int = Field(gt=0)
    popularity_half_life_days: float = Field(gt=0)
    cold_start_popular: int = Field(ge=0)  # popular items for a date's users who bought no product yet
    seasonal_window_days: int = Field(gt=0)
    max_basket_size: int = Field(gt=1)
    min_co_count: int = Field(ge=1)
    co_occurrence_max_orders: int | None = Field(gt=0)
    neighbours_per_item: int = Field(gt=0)
    anchor_items: int = Field(gt=0)
    als: AlsSettings
    similar_users: SimilarUserSettings

    @field_validator("limits")
    @classmethod
    def _known_sources(cls, limits: dict[str, int]) -> dict[str, int]:
        check_named_values(
            limits, CANDIDATE_SOURCES, kind="candidate source", what="limits (0 turns a source off)"
        )
        return limits


class RankingSettings(_Strict):
    k: int = Field(gt=0)
    new_items: bool  # the new-items mode: no list holds anything the user bought before


class ProfileTextSettings(_Strict):
    recent_items: int = Field(ge=0)
    top_categories: int = Field(ge=0)
    max_chars: int = Field(ge=40)


class ScorerSettings(_Strict):
    enabled: bool
    model: str | None  # 'minilm' (bi-encoder only) or a local folder / volume path
    top_n: int = Field(gt=0)  # candidates per user that reach this scorer
    batch_size: int = Field(gt=0)
    max_length: int = Field(gt=0)
    device: Literal["auto", "cpu", "cuda"]
    dtype: Literal["auto", "float32", "float16", "bfloat16"]


class CausalLMSettings(ScorerSettings):
    prompt: str  # with {profile} and {item}
    yes_token: str  # the answers compared at the position after the prompt; one token each
    no_token: str

    @field_validator("prompt")
    @classmethod
    def _placeholders(cls, prompt: str) -> str:
        missing = [p for p in ("{profile}", "{item}") if p not in prompt]
        if missing:
            raise ValueError(f"prompt must contain {missing}")
        return prompt


SCORER_NAMES = S.SCORER_NAMES


class ScoringSettings(_Strict):
    profile: ProfileTextSettings
    bi_encoder: ScorerSettings
    cross_encoder: ScorerSettings
    causal_lm: CausalLMSettings

    def scorers(self) -> dict[str, ScorerSettings]:
        """The enabled scorers by name, in SCORER_NAMES order."""
        return {name: getattr(self, name) for name in SCORER_NAMES if getattr(self, name).enabled}


class DiscriminatorSettings(_Strict):
    """The learned ranker (LambdaMART with xgboost.spark.SparkXGBRanker); conf/default.yaml says more."""

    enabled: bool  # `genre-spark run` trains (or reuses) it and writes ranker_scores
    label_days: int = Field(gt=0)  # a cut-off t is labelled by the purchases of [t, t + label_days)
    cutoffs: int = Field(gt=0)  # training cut-offs: as_of - label_days - i * cutoff_step_days, i < cutoffs
    cutoff_step_days: int = Field(gt=0)
    year_back_cutoff: bool  # one more cut-off on as_of's date 52 weeks earlier (the season ahead, last year)
    max_model_age_days: int = Field(ge=0)  # reuse the latest model trained this many days before as_of
    max_training_users: int | None = Field(gt=0)  # per cut-off, a seeded sample of the users with a label
    without: list[str]  # feature groups left out of the model (schemas.RANKER_FEATURE_GROUPS)
    shortlist: int | None = Field(gt=0)  # the ranker sees each user's n best-placed candidates; null: all
    new_items_model: bool  # a second model for the new-items mode, fitted on the newest cut-offs only
    new_items_cutoffs: int = Field(gt=0)  # how many (the newest first)
    num_workers: int = Field(gt=0)  # Spark tasks that train together (barrier mode)
    device: Literal["cpu", "cuda"]
    n_estimators: int = Field(gt=0)
    max_depth: int = Field(gt=0)
    learning_rate: float = Field(gt=0)
    min_child_weight: float = Field(ge=0)
    subsample: float = Field(gt=0, le=1)
    colsample_bytree: float = Field(gt=0, le=1)
    pairs_per_sample: int = Field(gt=0)  # lambdarank_num_pair_per_sample (top-k pairs per document)
    seed: int

    @field_validator("without")
    @classmethod
    def _groups(cls, groups: list[str]) -> list[str]:
        unknown = sorted(set(groups) - set(S.RANKER_FEATURE_GROUPS))
        if unknown:
            raise ValueError(
                f"unknown feature group(s) {unknown}; valid choices: {sorted(S.RANKER_FEATURE_GROUPS)}"
            )
        return groups


class EvaluationSettings(_Strict):
    horizon_days: int = Field(gt=0)  # ground truth: purchases in [as_of, as_of + horizon_days)
    ks: list[int] = Field(min_length=1)
    baselines: list[str]  # candidate sources, each ranked alone
    half_lives: list[float] = Field(min_length=1)  # choices for the decayed buy-again baseline
    ablations: bool  # refit the ranker without each feature group and each source
    ablation_cutoffs: int | None = Field(gt=0)  # the model's most recent cut-offs the refits train on

    @field_validator("ks")
    @classmethod
    def _positive(cls, ks: list[int]) -> list[int]:
        if any(k <= 0 for k in ks):
            raise ValueError(f"ks must be positive, got {ks}")
        return sorted(set(ks))


class FeedbackSourceSettings(SourceSettings):
    """A serving log (impressions, clicks, add-to-carts, purchases of listed items): CSV, Parquet or Delta."""

    table: Literal["events", "items", "users", "feedback_events"] = "feedback_events"
    as_of_format: str = "yyyy-MM-dd"  # of the as_of column when it is text

    @model_validator(mode="after")
    def _names_the_list(self) -> FeedbackSourceSettings:
        if self.table != S.FEEDBACK_EVENTS:
            raise ValueError(f"a feedback source feeds table '{S.FEEDBACK_EVENTS}', not '{self.table}'")
        if S.RUN_ID not in self.columns and S.AS_OF not in self.columns:
            raise ValueError("a feedback source maps run_id or as_of (which served list an event is about)")
        return self


class FeedbackSettings(_Strict):
    source: FeedbackSourceSettings | None  # null: purchases of listed items, derived from events
    window_days: int = Field(gt=0)  # lists of the last N days before the run receive feedback
    prior_mean: float = Field(gt=0, lt=1)  # conversion a strategy is expected to have before any feedback
    prior_strength: float = Field(gt=0)  # the prior weighs as much as this many served items
    half_life_days: float = Field(gt=0)  # evidence this many days old weighs half
    exploration_floor: float = Field(ge=0, le=0.5)  # least selection probability of each allowed strategy
    seed: int
    adaptive: bool  # the ranking stage picks strategies by Thompson sampling instead of the selection rules


class ReplaySettings(_Strict):
    weeks: int = Field(gt=0)  # weeks replayed when --weeks is not given
    window_days: int = Field(gt=0)  # purchases in [T, T + window) are the feedback on the lists of T
    ndcg_k: int = Field(gt=0)  # cut-off of the NDCG in the report
    strategies: list[str] | None  # fixed-strategy policies to compare with; null = every strategy
    ranker: Literal["book", "blend"]  # book: each strategy's own ranker; blend: every strategy by its blend


# Sections no stage ahead of the learned ranker reads: changing them leaves a date's stored stage outputs
# valid (where and how Spark runs, the ranker, the lists' head, evaluate and replay).
AFTER_THE_STAGES = ("spark", "storage", "discriminator", "ranking", "evaluation", "replay")


class Settings(_Strict):
    strategies_file: str | None
    spark: SparkSettings
    storage: StorageSettings
    ingest: IngestSettings
    enrich: EnrichSettings
    features: FeatureSettings
    segments: SegmentSettings
    candidates: CandidateSettings
    scoring: ScoringSettings
    ranking: RankingSettings
    feedback: FeedbackSettings
    discriminator: DiscriminatorSettings
    evaluation: EvaluationSettings
    replay: ReplaySettings

    @model_validator(mode="before")
    @classmethod
    def _lm_features_need_a_scorer(cls, data: Any) -> Any:
        """With every scorer off there are no LM scores: the ranker leaves the "lm" group out by itself,
        so enabling a scorer is one switch (``--set scoring.bi_encoder.enabled=true``)."""
        try:
            scoring, ranker = data["scoring"], data["discriminator"]
            enabled = any(scoring[name]["enabled"] for name in SCORER_NAMES)
            without = list(ranker["without"])
        except (KeyError, TypeError):
            return data  # incomplete: the field validators name what is missing
        if enabled or "lm" in without:
            return data
        return {**data, "discriminator": {**ranker, "without": [*without, "lm"]}}

    @model_validator(mode="after")
    def _segment_features_exist(self) -> Settings:
        unknown = sorted(set(self.segments.features) - set(S.USER_FEATURE_NUMBERS))
        if unknown:
            raise ValueError(
                f"segments.features: {unknown} are not user features; "
                f"valid choices: {list(S.USER_FEATURE_NUMBERS)}"
            )
        return self

    def fingerprint(self, *extra: object, leave_out: Iterable[str] = ()) -> str:
        """A short stable hash of the effective config but the ``leave_out`` sections, and ``extra`` (JSON
        values or pydantic models: the strategy book)."""
        config = self.model_dump(mode="json", exclude=set(leave_out))
        inputs = [e.model_dump(mode="json") if isinstance(e, BaseModel) else e for e in extra]
        payload = [config, *inputs] if inputs else config
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:10]

    def stage_fingerprint(self, *extra: object) -> str:
        """The fingerprint of what the dated stages ahead of the ranker read (every section but
        ``AFTER_THE_STAGES``) and ``extra``: a date's stored features, segments, candidates and scores
        are reusable by a run whose stage fingerprint is the one they were written under."""
        return self.fingerprint(*extra, leave_out=AFTER_THE_STAGES)


def default_run_id(settings: Settings, as_of: dt.date, *inputs: BaseModel | str | None) -> str:
    """The same date, config and ``inputs`` (what else changes the stages' output: the strategy book, the
    context's hour band) give the same run id, hence a rerun that is a no-op; any change, a new run id."""
    return f"{as_of.isoformat()}-{settings.fingerprint(*inputs)}"


# --------------------------------------------------------------------------- loading


def default_config_text() -> str:
    return resources.files("genre_spark").joinpath("default.yaml").read_text(encoding="utf-8")


def load_settings(config_paths: Sequence[str | Path] = (), overrides: Iterable[str] = ()) -> Settings:
    """Packaged defaults, then each YAML file in order, then ``key.path=value`` overrides."""
    merged = yaml_mapping(default_config_text(), "<packaged default.yaml>")
    for path in config_paths:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} does not exist")
        merged = _deep_merge(merged, yaml_mapping(p.read_text(encoding="utf-8"), str(p)))
    for override in overrides:
        _apply_override(merged, override)
    return parse_settings(merged)


def parse_settings(data: Mapping[str, Any]) -> Settings:
    return parse_model(Settings, data, "configuration")


ModelT = TypeVar("ModelT", bound=BaseModel)


def parse_model(model: type[ModelT], data: Mapping[str, Any], origin: str) -> ModelT:
    """Validate ``data`` as ``model``; errors name each key, the value found and the valid choices."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = "\n".join(_describe(err, model) for err in exc.errors())
        raise ConfigError(f"invalid {origin}:\n{lines}") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key repeated in one mapping is an error (YAML keeps the last one
    silently, so a knob set twice in a long file would quietly lose its first value)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    first_line: dict[str, int] = {}
    for key_node, _ in node.value:
        key = str(loader.construct_object(key_node))
        if key in first_line:
            message = f"key {key!r} repeated (first on line {first_line[key] + 1})"
            raise yaml.constructor.ConstructorError(None, None, message, key_node.start_mark)
        first_line[key] = key_node.start_mark.line
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def yaml_mapping(text: str, origin: str) -> dict[str, Any]:
    """The mapping a YAML file holds ({} when empty); a ConfigError naming ``origin`` when it is not valid
    YAML, repeats a key or is not a mapping."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping at the top level, found {type(data).__name__}")
    return data


def _deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _apply_override(data: dict[str, Any], override: str) -> None:
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {override!r}: expected KEY.PATH=VALUE")
    parts = key.strip().split(".")
    node = data
    model: Any = Settings
    depth = 0
    while depth < len(parts) - 1:
        part = parts[depth]
        model = _child_type(model, part)
        if _is_string_map(model):
            # free-form maps (spark.conf) take dotted keys whole: spark.conf.spark.driver.memory=4g
            node = node.setdefault(part, {})
            node[".".join(parts[depth + 1 :])] = raw
            return
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(
                f"override {override!r}: '{'.'.join(parts[: depth + 1])}' is a value, not a section"
            )
        node = child
        depth += 1
    try:
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {override!r}: value is not valid YAML: {exc}") from None


def _child_type(model: Any, key: str) -> Any:
    """Type of ``key`` below ``model`` (a settings model or a dict[str, X] level); None if unknown."""
    if isinstance(model, type) and issubclass(model, BaseModel):
        field = model.model_fields.get(key)
        return None if field is None else field.annotation
    if get_origin(model) is dict:
        return get_args(model)[-1]
    return None


def _is_string_map(model: Any) -> bool:
    return get_origin(model) is dict and get_args(model)[-1] is str


def _describe(err: Mapping[str, Any], root: type[BaseModel]) -> str:
    loc = tuple(err["loc"])
    key = ".".join(str(p) for p in loc) or "<root>"
    kind = err["type"]
    if kind == "extra_forbidden":
        valid = _valid_keys(root, loc[:-1])
        return f"  config key '{key}': unknown key; valid keys here: {', '.join(valid)}"
    if kind == "missing":
        return f"  config key '{key}': required but missing"
    value = json.dumps(err.get("input"), default=str)
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"  config key '{key}': got {value}; {message}"


def _valid_keys(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model found by walking ``loc`` from ``root``."""
    model: Any = root
    for part in loc:
        model = _child_type(model, str(part))
    if isinstance(model, type) and issubclass(model, BaseModel):
        return sorted(model.model_fields)
    return []
