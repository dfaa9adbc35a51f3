"""``python -m job bench``: every part in one run."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tools.bench.bounds import (
    FLOOR_SHAPES,
    core_us,
    embedded_factor,
    run_embedded_core,
    run_floor_job,
    split_core_loop,
)
from tools.bench.cluster import run_cluster
from tools.bench.common import (
    FLOOR_FALLBACK_JOB_EPS,
    FLOOR_SPEEDUP,
    HEADLINE_METRICS,
    JOB_SHARE,
    LATENCY_JOB_SHARE,
    METHOD,
    PROJECT_ROOT,
    TARGETS,
)
from tools.bench.custom_models import measure as measure_custom
from tools.bench.flink import run_detect_job, run_naive_job
from tools.bench.latency import latency_stats, run_checkpoint_job, run_latency_job
from tools.bench.loops import measure_plain, naive_plain_loop, plain_loop
from tools.bench.machine import machine_info
from tools.bench.plan import Plan
from tools.bench.profiling import profile_plain
from tools.bench.render import (
    ALL_PARTS,
    QUICK_BUDGET_S,
    build_report,
    fmt,
    job_row,
    measure_job,
    render_markdown,
)
from tools.bench.scale import run_scale
from tools.bench.state_size import state_growth, steady_state_hours
from tools.bench.stats import marginal_rate, ratio
from tools.bench.streams import generate_events, write_lines
from udfs.core.config import DetectorConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="a shorter run (about 3 minutes)")
    p.add_argument("--out", default="bench/results", help="results folder (default: %(default)s)")
    p.add_argument(
        "--only",
        default="",
        help="comma-separated parts: " + ",".join(ALL_PARTS),
    )
    p.add_argument(
        "--scale-entities",
        type=int,
        default=None,
        help="entities of the RocksDB part (`scale`; default 100,000; 1000000 for the million-entity run)",
    )
    p.add_argument("--tag", default="", help="results as <date>-<tag>.json/.md (default: <date>.json/.md)")
    p.add_argument("--keep-tmp", action="store_true", help="keep the generated inputs in bench/tmp")


def run(args: argparse.Namespace) -> int:
    return main(args)


#: The documented lower-latency setting (job/config.py ExecutionConfig): the latency part
#: measures its latency and its throughput beside the defaults'.
LOW_LATENCY = ["execution.batch_flush_ms=10"]


class BenchRun:
    """One ``bench`` run: the plan, the results so far and what the parts share (the
    generated streams and their sizes, the rows of earlier parts). Each part is a method."""

    def __init__(self, plan: Plan, parts: set[str], work: Path) -> None:
        self.t_start = time.perf_counter()
        self.plan = plan
        self.parts = parts
        self.work = work
        self.cfg = DetectorConfig()
        self.res: dict[str, Any] = {
            "date": _dt.date.today().isoformat(),
            "quick": plan.quick,
            "plan": dataclasses.asdict(plan),
            "machine": machine_info(),
            "errors": [],
        }
        self.state: dict[str, Any] = {"per_metrics": []}
        self.res["state"] = self.state
        self.streams: dict[int, list[str]] = {}
        self.sizes: dict[int, tuple[int, int]] = {}
        self.plain_rows: list[dict[str, Any]] = []
        self.res["plain"] = self.plain_rows
        self.throughput: list[dict[str, Any]] = []
        self.res["throughput"] = self.throughput
        self.warmed: set[str] = set()  # modes that have run a throw-away job in this process
        self.floor_rows: list[dict[str, Any]] = []
        self.checkpoints: list[dict[str, Any]] = []
        self.res["checkpoint"] = self.checkpoints

    def log(self, msg: str) -> None:
        print(msg, flush=True)

    def part(self, name: str, fn: Callable[[], None]) -> None:
        """Run part ``name`` if it was asked for (and the quick budget allows): a failed part
        is reported, the others still run."""
        if name not in self.parts:
            return
        elapsed = time.perf_counter() - self.t_start
        if self.plan.quick and elapsed > QUICK_BUDGET_S:
            self.res["errors"].append(f"{name}: skipped, the quick run was past {QUICK_BUDGET_S:.0f} s")
            self.log(f"[{name}] skipped: {elapsed:.0f} s gone, the quick budget is {QUICK_BUDGET_S:.0f} s")
            return
        t = time.perf_counter()
        self.log(f"[{name}]")
        try:
            fn()
        except Exception as exc:  # a failed part is reported, the others still run
            self.res["errors"].append(f"{name}: {type(exc).__name__}: {exc}")
            self.log(f"  FAILED: {type(exc).__name__}: {exc}")
        self.log(f"  ({time.perf_counter() - t:.0f} s)")

    def ensure_streams(self) -> None:
        """The streams the job parts need, when the plain part did not size them."""
        if self.streams:
            return
        for m in self.plan.metrics:
            n1, n2 = self.plan.sizes(500)
            self.streams[m] = generate_events(n2, metrics=m, entities=self.plan.entities, interval_ms=self.plan.interval_ms)
            self.sizes[m] = (n1, n2)

    def state_part(self) -> None:
        # (Shorter than steady_state_hours, the drift monitor's samples would be left out.)
        hours = max(self.plan.state_hours, steady_state_hours(self.cfg, self.plan.interval_ms))
        for m in self.plan.metrics:
            s = state_growth(m, self.cfg, hours=hours, interval_ms=self.plan.interval_ms)
            self.state["per_metrics"].append(s)
            self.log(f"  self.state {m:>2} metrics: {s['steady_bytes']:,} bytes after {hours:g} h; "
                f"encode {s['snapshot_encode_us']} us, decode+restore {s['decode_restore_us']} us")


    def profile(self) -> None:
        lines = generate_events(self.plan.profile_events, metrics=HEADLINE_METRICS, entities=self.plan.entities)
        pr = profile_plain(lines, self.cfg)
        self.res["profile"] = pr
        self.log("  " + ", ".join(f"{r_['what']} {r_['share'] * 100:.0f}%" for r_ in pr["by_module"][:8]))


    def plain(self) -> None:
        for m in self.plan.metrics:
            # Size the stream from a short probe of the operator loop, then measure both loops.
            probe_lines = generate_events(600, metrics=m, entities=self.plan.entities)
            (_, w1, _), (_, w2, _) = plain_loop(probe_lines, self.cfg, codec=True, marks=(200, 600))
            # The job runs at about 0.3-0.45 of the operator loop (Flink's own per-event
            # cost): size its runs for about job_seconds of marginal work at 0.4.
            n1, n2 = self.plan.sizes(JOB_SHARE * 400 / (w2 - w1))
            self.streams[m] = generate_events(n2, metrics=m, entities=self.plan.entities, interval_ms=self.plan.interval_ms)
            self.sizes[m] = (n1, n2)
            for variant, codec in (("core", False), ("operator", True)):
                row = measure_plain(self.streams[m], self.cfg, n1, n2, codec=codec, repeats=self.plan.repeats)
                row.update(variant=variant, metrics=m)
                self.plain_rows.append(row)
                self.log(f"  plain {variant:<10} {m:>2} metrics: {row['eps']:8,.0f} events/s ({row['eps_per_cpu_s']:,.0f} per CPU-s)")


    def warm_up(self, mode: str) -> None:
        # A thread-mode job first, always: a client that ran a process-mode job before its
        # first thread-mode job hung in PEMJA's interpreter start (seen with Flink 2.3.0).
        for m in ("thread", mode):
            if m not in self.warmed:
                warm = write_lines(self.work / f"warmup-{m}.jsonl", self.streams[HEADLINE_METRICS][:200])
                run_detect_job(warm, [f"execution.mode={m}"], f"bench-warmup-{m}")
                self.warmed.add(m)


    def jobs(self, mode: str, metric_counts: Sequence[int]) -> None:
        self.warm_up(mode)
        for m in metric_counts:
            n1, n2 = self.sizes[m]
            if mode == "process":  # slower: keep its runs about as long
                n1, n2 = self.plan.sizes(0.4 * (n2 - n1) / self.plan.job_seconds)
                n2 = min(n2, len(self.streams[m]))
            reps = self.plan.headline_repeats if m == HEADLINE_METRICS and mode == "thread" else self.plan.repeats
            row = measure_job(self.streams[m], self.work, mode, m, n1, n2, reps, self.log)
            self.throughput.append(row)
            pl = next((p for p in self.plain_rows if p["metrics"] == m and p["variant"] == "core"), {})
            self.log(
                f"  job {mode} {m:>2} metrics: {fmt(row['eps'])} events/s, {fmt(row['eps_per_cpu_s'])} per CPU-s; "
                f"job/plain {fmt(ratio(row['eps'], pl.get('eps')), 2)} (wall), "
                f"{fmt(ratio(row['eps_per_cpu_s'], pl.get('eps_per_cpu_s')), 2)} (CPU)"
            )


    def floor(self) -> None:
        # Null operators run several times faster than the job: size each shape for
        # floor_seconds of marginal work at its expected rate (the first size: 1 s).
        job = next((j for j in self.throughput if j["mode"] == "thread" and j["metrics"] == HEADLINE_METRICS), {})
        job_rate = job.get("eps") or FLOOR_FALLBACK_JOB_EPS  # (sizing only)
        step = self.plan.entities
        shape_sizes = {}
        for shape in FLOOR_SHAPES:
            rate = FLOOR_SPEEDUP[shape] * job_rate
            f1 = max(1000, int(rate)) // step * step
            shape_sizes[shape] = (f1, f1 + max(4000, int(rate * self.plan.floor_seconds)) // step * step)
        longest = max(b for _, b in shape_sizes.values())
        lines = generate_events(longest, metrics=HEADLINE_METRICS, entities=step, interval_ms=self.plan.interval_ms)
        self.warm_up("thread")
        for shape in FLOOR_SHAPES:
            n1, n2 = shape_sizes[shape]
            files = {n: write_lines(self.work / f"floor-{shape}-{n}.jsonl", lines[:n]) for n in (n1, n2)}
            runs = []
            for rep in range(self.plan.repeats):
                for n in (n1, n2) if rep % 2 == 0 else (n2, n1):
                    t = run_floor_job(files[n], shape, f"bench-floor-{shape}-{n}")
                    runs.append({"n": n, **t})
            row = job_row("thread", HEADLINE_METRICS, n1, n2, runs)
            row["shape"] = shape
            self.floor_rows.append(row)
            self.res["floor"] = self.floor_rows
            self.log(f"  floor {shape:<8}: {fmt(row['eps'])} events/s, {fmt(row['eps_per_cpu_s'])} per CPU-s")
        # The core loop inside a thread-mode task and in this process, taking turns.
        k = min(len(lines), self.plan.embedded_events)
        path = write_lines(self.work / "embedded.jsonl", lines[:k])
        runs_in: list[dict[str, float]] = []
        runs_out: list[dict[str, float]] = []
        for _ in range(self.plan.repeats):
            runs_out.append(split_core_loop(lines[:k], self.cfg, self.plan.embedded_reps))
            runs_in.append(run_embedded_core(path, self.plan.embedded_reps))
        emb: dict[str, Any] = {
            "events": k,
            "in_process": min(runs_out, key=core_us),
            "in_job": min(runs_in, key=core_us),
        }
        emb["factor"] = embedded_factor(emb)
        self.res["embedded"] = emb
        self.log(f"  core loop: {core_us(emb['in_job']):.1f} us/event in a thread-mode task, "
            f"{core_us(emb['in_process']):.1f} in this process ({emb['factor']:.2f}x)")


    def naive(self) -> None:
        lines = self.streams[HEADLINE_METRICS]
        (_, w1, c1), (_, w2, c2) = naive_plain_loop(lines[:120], marks=(20, 120))
        plain_rate = 100 / (w2 - w1)
        self.res["naive_plain"] = {
            "metrics": HEADLINE_METRICS, "n1": 20, "n2": 120,
            "eps": plain_rate, "eps_per_cpu_s": 100 / max(c2 - c1, 1e-9),
        }
        self.log(f"  naive River plain loop (pickle per event): {plain_rate:,.1f} events/s")
        # Pickling dominates, so the job should run at about the loop's rate.
        guess = max(5.0, min(plain_rate, 200.0))
        n1 = max(32, int(guess * self.plan.base_seconds)) // self.plan.entities * self.plan.entities
        n2 = n1 + max(96, int(guess * self.plan.naive_seconds)) // self.plan.entities * self.plan.entities
        files = {n: write_lines(self.work / f"naive-{n}.jsonl", lines[:n]) for n in (n1, n2)}
        self.warm_up("thread")
        runs = []
        for n in (n1, n2):
            t = run_naive_job(files[n], f"bench-naive-{n}")
            runs.append({"n": n, **t})
            self.log(f"    naive N={n}: {t['wall_s']:.1f} s wall, {t['cpu_s']:.1f} s cpu")
        row = job_row("thread", HEADLINE_METRICS, n1, n2, runs)
        self.res["naive"] = row
        job = next((j for j in self.throughput if j["mode"] == "thread" and j["metrics"] == HEADLINE_METRICS), {})
        self.log(f"  naive job: {fmt(row['eps'], 1)} events/s; job/naive {fmt(ratio(job.get('eps'), row['eps']), 1)}x")


    def latency(self) -> None:
        self.warm_up("thread")
        job = next((j for j in self.throughput if j["mode"] == "thread" and j["metrics"] == HEADLINE_METRICS), {})
        pl = next((p for p in self.plain_rows if p["metrics"] == HEADLINE_METRICS and p["variant"] == "core"), {})
        # Half the maximum rate of the latency job itself: it emits a score record for every
        # event and runs two more Python maps (pace, arrivals), so it tops out below the
        # throughput job (at half of that job's rate it was saturated: the 2026-11-27 full
        # run's p50 was 684 ms, with the source 1.6 s behind its schedule). Its maximum is
        # the marginal rate of two unpaced runs.
        guess = LATENCY_JOB_SHARE * (job.get("eps") or JOB_SHARE * (pl.get("eps") or 1250.0))
        m1, m2 = self.plan.sizes(guess)
        m2 = m1 + (m2 - m1) // 2 // self.plan.entities * self.plan.entities
        unpaced = generate_events(m2, metrics=HEADLINE_METRICS, entities=self.plan.entities, interval_ms=self.plan.interval_ms)
        lw = self.work / "latency"
        lw.mkdir(exist_ok=True)
        files = {m_: write_lines(self.work / f"latency-max-{m_}.jsonl", unpaced[:m_]) for m_ in (m1, m2)}

        def top_rate(overrides: list[str]) -> float | None:
            top = {
                m_: run_latency_job(files[m_], math.inf, lw, entities=self.plan.entities, interval_ms=self.plan.interval_ms, overrides=overrides)["timing"]
                for m_ in (m1, m2)
            }
            return marginal_rate(m1, top[m1]["wall_s"], m2, top[m2]["wall_s"])

        default_rate = max_rate = top_rate([])  # (None when noise hid it: no ratio below)
        basis = "the latency job unpaced (wall, marginal rate)"
        if not max_rate:  # noise larger than the signal: fall back on the throughput job
            max_rate = job.get("eps") or pl.get("eps") or 500.0
            basis = "job thread 4 metrics (wall)" if job.get("eps") else "plain loop"
        self.log(f"  latency job unpaced: {fmt(max_rate)} events/s (N {m1:,} and {m2:,})")
        rate = 0.5 * max_rate
        n = int(rate * self.plan.latency_seconds) // self.plan.entities * self.plan.entities
        lines = generate_events(n, metrics=HEADLINE_METRICS, entities=self.plan.entities, interval_ms=self.plan.interval_ms)
        path = write_lines(self.work / "latency.jsonl", lines)
        raw = run_latency_job(path, rate, lw, entities=self.plan.entities, interval_ms=self.plan.interval_ms, overrides=[])
        stats = latency_stats(raw["pace"], raw["arrivals"], warmup_s=self.plan.latency_warmup_s, tail_events=self.plan.entities)
        stats.update(
            entities=self.plan.entities,
            max_rate=max_rate,
            max_rate_basis=basis,
            max_rate_sizes=[m1, m2],
            throughput_job_eps=job.get("eps"),
            ordering_wait_ms_estimate=1000.0 * self.plan.entities / rate,
            note=(
                "Event time is compressed (each entity reports every 20 s of event time, sent "
                f"{self.plan.entities / rate * 1000:.0f} ms apart in wall time), so an event is released "
                "from its entity's order buffer when that entity's next event arrives (or the "
                "watermark, emitted every 200 ms, passes it): that wait is part of these numbers. "
                "In a live stream (event time = wall time) every score additionally waits for "
                "detector.lateness.max_out_of_orderness_ms (5 s by default)."
            ),
        )
        # The documented lower-latency setting, at the same paced rate, and what it costs: the
        # same unpaced marginal rate measured with it, in this run.
        low_rate = top_rate(LOW_LATENCY)
        raw = run_latency_job(path, rate, lw, entities=self.plan.entities, interval_ms=self.plan.interval_ms, overrides=LOW_LATENCY)
        low = latency_stats(raw["pace"], raw["arrivals"], warmup_s=self.plan.latency_warmup_s, tail_events=self.plan.entities)
        low.update(label=" ".join(LOW_LATENCY), overrides=LOW_LATENCY, max_rate=low_rate,
                   throughput_ratio_to_default=ratio(low_rate, default_rate))
        stats["low_latency"] = low
        self.log(
            f"  latency with {' '.join(LOW_LATENCY)}: p50 {low['from_send_ms']['p50']:.1f} ms, p99 "
            f"{low['from_send_ms']['p99']:.1f} ms; unpaced {fmt(low_rate)} events/s "
            f"({fmt(low['throughput_ratio_to_default'], 2)} of the default)"
        )
        self.res["latency"] = stats
        fs = stats["from_send_ms"]
        self.log(f"  latency at {rate:,.0f} events/s: p50 {fs['p50']:.1f} ms, p99 {fs['p99']:.1f} ms ({stats['samples']:,} samples)")
        if not self.plan.quick:
            # One entity: its next event comes 1/rate later, so the order wait nearly vanishes
            # and what is left is the pipeline (queues, network buffer timeout, Python).
            one = generate_events(n, metrics=HEADLINE_METRICS, entities=1, interval_ms=self.plan.interval_ms)
            p1 = write_lines(self.work / "latency-1.jsonl", one)
            raw = run_latency_job(p1, rate, lw, entities=1, interval_ms=self.plan.interval_ms, overrides=[])
            s1 = latency_stats(raw["pace"], raw["arrivals"], warmup_s=self.plan.latency_warmup_s, tail_events=1)
            s1["label"] = "1 entity: pipeline only"
            stats["variants"] = [s1]
            self.log(f"  latency, one entity: p50 {s1['from_send_ms']['p50']:.1f} ms, p99 {s1['from_send_ms']['p99']:.1f} ms")


    def checkpoint(self) -> None:
        self.warm_up("thread")
        for e in self.plan.checkpoint_entities:
            c = run_checkpoint_job(e, 2, HEADLINE_METRICS, self.work / f"checkpoint-{e}")
            self.checkpoints.append(c)
            self.log(f"  checkpoint, {e:,} entities: {c['checkpoint_bytes']:,} bytes; Flink overhead "
                f"{c['overhead_bytes_per_key']:,.0f} bytes per key")

    def custom(self) -> None:
        """What each kind of custom model costs beside the default (plain loop)."""
        self.res["custom_models"] = measure_custom(self.plan.custom_events, self.work)
        for kind, row in self.res["custom_models"]["kinds"].items():
            self.log(f"  {kind:<26} {row['eps_per_cpu_s']:>8,} events/CPU-s ({row['ratio_to_default']:.2f}), "
                     f"{row['state_bytes_per_entity']:,} bytes/entity")

    def state_totals(self) -> None:
        """State of 1,000 to 100,000 entities from the steady bytes per entity."""
        steady = next(
            (s.get("steady_bytes_with_journal", s["steady_bytes"]) for s in self.state["per_metrics"]
             if s["metrics"] == HEADLINE_METRICS),
            None,
        )
        if not steady:
            return
        overhead = self.checkpoints[-1]["overhead_bytes_per_key"] if self.checkpoints else None
        self.state["totals"] = [
            {
                "entities": n,
                "values_mb": n * steady / 1e6,
                "with_overhead_mb": None if overhead is None else n * (steady + overhead) / 1e6,
            }
            for n in (1_000, 10_000, 100_000)
        ]

    def scale(self) -> None:
        self.res["scale"] = run_scale(self.work / "scale", self.log, entities=self.plan.scale_entities)

    def run_all(self) -> None:
        """Every part asked for, in order."""
        self.log(f"bench: {'quick' if self.plan.quick else 'full'} run; parts: "
                 f"{', '.join(p for p in ALL_PARTS if p in self.parts)}")
        self.log("  " + METHOD)
        self.part("state", self.state_part)
        self.part("profile", self.profile)
        self.part("plain", self.plain)
        self.ensure_streams()  # parts after this need the streams and their sizes
        self.part("thread", lambda: self.jobs("thread", self.plan.metrics))
        self.part("floor", self.floor)
        self.part("naive", self.naive)
        self.part("latency", self.latency)
        self.part("checkpoint", self.checkpoint)
        self.part("process", lambda: self.jobs("process", self.plan.process_metrics))
        self.state_totals()
        self.part("custom", self.custom)
        self.part("cluster", lambda: self.res.__setitem__("cluster", run_cluster(self.plan, self.work, self.log)))
        self.part("scale", self.scale)
        self.res["machine"]["loadavg_end"] = list(os.getloadavg())
        self.res["duration_s"] = round(time.perf_counter() - self.t_start, 1)


def main(args: argparse.Namespace) -> int:
    """Run the benchmark; write ``<out>/<date>.json`` and ``.md``; print the table."""
    plan = Plan.for_mode(bool(args.quick))
    if getattr(args, "scale_entities", None):
        plan = dataclasses.replace(plan, scale_entities=int(args.scale_entities))
    parts = set(p.strip() for p in args.only.split(",") if p.strip()) or set(ALL_PARTS)
    unknown = parts - set(ALL_PARTS)
    if unknown:
        raise ValueError(f"unknown --only parts: {', '.join(sorted(unknown))} (known: {', '.join(ALL_PARTS)})")
    if not plan.cluster:
        parts.discard("cluster")
        parts.discard("scale")
    work = PROJECT_ROOT / "bench" / "tmp"
    work.mkdir(parents=True, exist_ok=True)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    bench = BenchRun(plan, parts, work)
    bench.run_all()
    res = bench.res
    report = build_report(res)
    tag = getattr(args, "tag", "")
    date = res["date"] + (f"-{tag}" if tag else "")
    (out_dir / f"{date}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    md = render_markdown(report)
    (out_dir / f"{date}.md").write_text(md)
    if not args.keep_tmp:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(md)
    print(
        f"job / plain loop (core): {fmt(report['job_vs_plain'], 2)} (wall), "
        f"{fmt(report['job_vs_plain_cpu'], 2)} (per CPU-second); target >= {TARGETS['job_vs_plain']:.2f}"
    )
    print(
        f"job / naive: {fmt(report['job_vs_naive'], 1)}x (wall), "
        f"{fmt(report['job_vs_naive_cpu'], 1)}x (per CPU-second); target >= {TARGETS['job_vs_naive']:.0f}x"
    )
    print(f"wrote {out_dir / (date + '.json')} and {out_dir / (date + '.md')}")
    return 1 if res["errors"] else 0
