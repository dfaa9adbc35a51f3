"""The results: the report's numbers and its markdown."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tools.bench.bounds import core_us, job_bounds
from tools.bench.common import AT_MOST, HEADLINE_METRICS, METHOD, SNAPSHOT_EVERY, TARGETS
from tools.bench.flink import run_detect_job
from tools.bench.scale import render_scale
from tools.bench.stats import fastest, fixed_cost, marginal_rate, ratio
from tools.bench.streams import write_lines

# -- running it all ---------------------------------------------------------------------------


def job_row(
    mode: str, metrics: int, n1: int, n2: int, runs: list[dict[str, Any]]
) -> dict[str, Any]:
    wall = fastest((r["n"], r["wall_s"]) for r in runs)
    cpu = fastest((r["n"], r["cpu_s"]) for r in runs)
    net = fastest((r["n"], r["net_runtime_s"]) for r in runs)
    eps = marginal_rate(n1, wall[n1], n2, wall[n2])
    eps_cpu = marginal_rate(n1, cpu[n1], n2, cpu[n2])
    return {
        "mode": mode,
        "metrics": metrics,
        "n1": n1,
        "n2": n2,
        "eps": eps,
        "eps_per_cpu_s": eps_cpu,
        "eps_net_runtime": marginal_rate(n1, net[n1], n2, net[n2]),
        "cores_used": ratio(eps, eps_cpu),  # CPU-seconds per wall-second over N1..N2
        "fixed_cost_s": fixed_cost(n1, wall[n1], eps),
        "runs": [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in runs],
    }


def measure_job(
    lines: Sequence[str],
    work: Path,
    mode: str,
    metrics: int,
    n1: int,
    n2: int,
    repeats: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    files = {n: write_lines(work / f"{mode}-{metrics}m-{n}.jsonl", lines[:n]) for n in (n1, n2)}
    runs = []
    for rep in range(repeats):
        for n in (n1, n2) if rep % 2 == 0 else (n2, n1):
            t = run_detect_job(files[n], [f"execution.mode={mode}"], f"bench-{mode}-{metrics}m-{n}")
            runs.append({"n": n, **t})
            log(f"    {mode} {metrics:>2} metrics N={n:>6}: {t['wall_s']:6.1f} s wall, {t['cpu_s']:6.1f} s cpu")
    return job_row(mode, metrics, n1, n2, runs)


def build_report(r: dict[str, Any]) -> dict[str, Any]:
    """The report: the required top-level keys from the measured tables (pure)."""
    def pick(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
        return next((x for x in rows if all(x.get(k) == v for k, v in match.items())), {})

    job = pick(r.get("throughput", []), mode="thread", metrics=HEADLINE_METRICS)
    plain = pick(r.get("plain", []), metrics=HEADLINE_METRICS, variant="core")
    operator = pick(r.get("plain", []), metrics=HEADLINE_METRICS, variant="operator")
    naive = r.get("naive", {})
    lat = r.get("latency", {}).get("from_send_ms", {})
    low = r.get("latency", {}).get("low_latency", {}).get("from_send_ms", {})
    scale = r.get("scale", {})
    state = pick(r.get("state", {}).get("per_metrics", []), metrics=HEADLINE_METRICS)
    report = {
        "job_eps": job.get("eps"),
        "plain_eps": plain.get("eps"),
        "plain_operator_eps": operator.get("eps"),
        "naive_eps": naive.get("eps"),
        "job_vs_plain": ratio(job.get("eps"), plain.get("eps")),
        "job_vs_plain_operator": ratio(job.get("eps"), operator.get("eps")),
        "job_vs_naive": ratio(job.get("eps"), naive.get("eps")),
        "job_eps_per_cpu_s": job.get("eps_per_cpu_s"),
        "plain_eps_per_cpu_s": plain.get("eps_per_cpu_s"),
        "naive_eps_per_cpu_s": naive.get("eps_per_cpu_s"),
        "job_vs_plain_cpu": ratio(job.get("eps_per_cpu_s"), plain.get("eps_per_cpu_s")),
        "job_vs_naive_cpu": ratio(job.get("eps_per_cpu_s"), naive.get("eps_per_cpu_s")),
        "latency_ms_p50": lat.get("p50"),
        "latency_ms_p99": lat.get("p99"),
        "latency_low_ms_p99": low.get("p99"),
        "latency_low_throughput_ratio": r.get("latency", {}).get("low_latency", {}).get("throughput_ratio_to_default"),
        "p2_over_p1_per_cpu_s": r.get("cluster", {}).get("p2_over_p1_per_cpu_s"),
        "rocksdb_eps_per_cpu_s": scale.get("rocksdb_eps_per_cpu_s"),
        "heap_eps_per_cpu_s": scale.get("heap_eps_per_cpu_s"),
        "rocksdb_state_bytes_per_entity": scale.get("rocksdb_state_bytes_per_entity"),
        "checkpoint_full_bytes": scale.get("checkpoint_full_bytes"),
        "checkpoint_incremental_bytes": scale.get("checkpoint_incremental_bytes"),
        "restore_s": scale.get("restore_s"),
        # The snapshot and a full journal: the most an entity holds at the steady state.
        "state_bytes_per_entity": state.get("steady_bytes_with_journal", state.get("steady_bytes")),
        "headline_metrics": HEADLINE_METRICS,
        "machine": r.get("machine", {}),
    }
    plain_cpu = plain.get("eps_per_cpu_s")
    bounds = job_bounds(plain_cpu, r.get("floor", []), r.get("embedded", {}))
    report["bounds"] = bounds
    # The best a job could reach at any shape measured: the bound of the least costly.
    best = max(bounds.values(), key=lambda b: b["eps_per_cpu_s"], default=None)
    report["bound_eps_per_cpu_s"] = best["eps_per_cpu_s"] if best else None
    report["bound_vs_plain_cpu"] = best["vs_plain"] if best else None
    report["targets"] = {
        name: {
            "target": target,
            "value": report[name],
            "met": None
            if report[name] is None
            else (report[name] <= target if name in AT_MOST else report[name] >= target),
        }
        for name, target in TARGETS.items()
    }
    for name, key in (("job_eps", "bound_eps_per_cpu_s"), ("job_vs_plain", "bound_vs_plain_cpu")):
        report["targets"][name]["bound"] = report[key]
    report["method"] = METHOD
    for k, v in r.items():
        report.setdefault(k, v)
    return report


def fmt(x: Any, digits: int = 0) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def _headline(rep: dict[str, Any]) -> list[str]:
    """The headline table (the targets and how far this run got) and the throughput table's head."""
    out = [
        f"# Benchmark {rep.get('date', '')} ({'quick' if rep.get('quick') else 'full'} run, "
        f"{fmt(rep.get('duration_s'))} s)",
        "",
        f"Machine: {rep['machine'].get('cpu_model')}, {rep['machine'].get('cores')} cores, "
        f"{rep['machine'].get('memory_gib')} GiB; Python {rep['machine'].get('python')}, "
        f"Flink {rep['machine'].get('flink')}, River {rep['machine'].get('river')}; load average "
        f"at start {rep['machine'].get('loadavg_start')}, at end {rep['machine'].get('loadavg_end')}; "
        f"compiled core modules (mypyc): {', '.join(rep['machine'].get('compiled_core') or []) or 'none'}; "
        f"line batcher: {rep['machine'].get('line_batcher') or 'none (one Python call per line)'}.",
        "",
        "## Headline (4 metrics per event, thread mode, parallelism 1)",
        "",
        "| measure | value | target | met |",
        "|---|---|---|---|",
    ]
    t = rep.get("targets", {})

    def target_row(label: str, key: str, digits: int, unit: str = "") -> str:
        tg = t.get(key, {})
        met = tg.get("met")
        return (
            f"| {label} | {fmt(rep.get(key), digits)}{unit} | {fmt(tg.get('target'), digits)}{unit} | "
            f"{'yes' if met else 'no' if met is not None else 'n/a'} |"
        )

    out += [
        target_row("job events/s (wall, marginal)", "job_eps", 0),
        target_row("job / plain loop (core)", "job_vs_plain", 2),
        target_row("job / naive River-in-ValueState job", "job_vs_naive", 1, "x"),
        target_row("state bytes per entity (steady state)", "state_bytes_per_entity", 0),
        f"| job events per CPU-second | {fmt(rep.get('job_eps_per_cpu_s'))} | | |",
        f"| job / plain, per CPU-second | {fmt(rep.get('job_vs_plain_cpu'), 2)} | | |",
        f"| job / plain operator loop (core + journal entry, snapshot every {SNAPSHOT_EVERY}) | "
        f"{fmt(rep.get('job_vs_plain_operator'), 2)} | | |",
        f"| job / naive, per CPU-second | {fmt(rep.get('job_vs_naive_cpu'), 1)}x | | |",
        f"| bound: the most any job running this core could reach, events per CPU-second | "
        f"{fmt(rep.get('bound_eps_per_cpu_s'))} | | |",
        f"| bound / plain, per CPU-second | {fmt(rep.get('bound_vs_plain_cpu'), 2)} | | |",
        f"| latency p50 (ms) at half the max rate | {fmt(rep.get('latency_ms_p50'), 1)} | | |",
        target_row("latency p99 (ms) at half the max rate", "latency_ms_p99", 1),
        f"| latency p99 (ms) with `{' '.join(rep.get('latency', {}).get('low_latency', {}).get('overrides', []))}`; "
        f"its throughput / the default's | {fmt(rep.get('latency_low_ms_p99'), 1)}; "
        f"{fmt(rep.get('latency_low_throughput_ratio'), 2)} | | |",
        target_row("standalone cluster p2 / p1, events per CPU-second (uniform entities)", "p2_over_p1_per_cpu_s", 2),
        f"| RocksDB / heap events per CPU-second ({fmt(rep.get('scale', {}).get('entities'))} / "
        f"{fmt(rep.get('scale', {}).get('heap_entities'))} entities) | {fmt(rep.get('rocksdb_eps_per_cpu_s'))} / "
        f"{fmt(rep.get('heap_eps_per_cpu_s'))} | | |",
        f"| RocksDB bytes per entity on disk; checkpoint full / incremental bytes; restore s | "
        f"{fmt(rep.get('rocksdb_state_bytes_per_entity'))}; {fmt(rep.get('checkpoint_full_bytes'))} / "
        f"{fmt(rep.get('checkpoint_incremental_bytes'))}; {fmt(rep.get('restore_s'), 1)} | | |",
        "",
        "## Throughput (marginal rate, events N1..N2)",
        "",
        "| what | mode | metrics | N1 | N2 | events/s (wall) | events/CPU-s | cores busy | fixed cost s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    return out


def _throughput(rep: dict[str, Any]) -> list[str]:
    """The rows of the plain loops, the jobs and the naive baseline, and their ratios."""
    out: list[str] = []
    for p in rep.get("plain", []):
        out.append(
            f"| plain loop {p['variant']} | - | {p['metrics']} | {p['n1']:,} | {p['n2']:,} | "
            f"{fmt(p['eps'])} | {fmt(p['eps_per_cpu_s'])} | 1 | 0 |"
        )
    for j in rep.get("throughput", []):
        out.append(
            f"| job | {j['mode']} | {j['metrics']} | {j['n1']:,} | {j['n2']:,} | {fmt(j['eps'])} | "
            f"{fmt(j['eps_per_cpu_s'])} | {fmt(j.get('cores_used'), 2)} | {fmt(j.get('fixed_cost_s'), 1)} |"
        )
    nv = rep.get("naive")
    if nv:
        out.append(
            f"| naive River job | thread | {nv['metrics']} | {nv['n1']:,} | {nv['n2']:,} | {fmt(nv['eps'], 1)} | "
            f"{fmt(nv['eps_per_cpu_s'], 1)} | {fmt(nv.get('cores_used'), 2)} | {fmt(nv.get('fixed_cost_s'), 1)} |"
        )
    np_ = rep.get("naive_plain")
    if np_:
        out.append(
            f"| naive River, plain loop (pickle per event) | - | {np_['metrics']} | {np_['n1']:,} | "
            f"{np_['n2']:,} | {fmt(np_['eps'], 1)} | {fmt(np_['eps_per_cpu_s'], 1)} | 1 | 0 |"
        )
    ratios = [
        (j["mode"], j["metrics"], ratio(j["eps"], pl.get("eps")), ratio(j["eps_per_cpu_s"], pl.get("eps_per_cpu_s")))
        for j in rep.get("throughput", [])
        for pl in [next((p for p in rep.get("plain", []) if p["metrics"] == j["metrics"] and p["variant"] == "core"), {})]
    ]
    if ratios:
        out += ["", "| job / plain (core) | metrics | wall | per CPU-second |", "|---|---|---|---|"]
        out += [f"| {m} | {k} | {fmt(a, 2)} | {fmt(b, 2)} |" for m, k, a, b in ratios]
    return out


def _bounds(rep: dict[str, Any]) -> list[str]:
    """What bounds the job: the floor shapes, the embedded core loop, idle cores."""
    out: list[str] = []
    emb = rep.get("embedded")
    if rep.get("floor") or emb:
        out += [
            "",
            f"## What bounds the job ({HEADLINE_METRICS} metrics, thread mode, per CPU-second)",
            "",
            "A job's cost per event is at least its shape's *floor* (the same job with a keyed "
            "operator that does nothing with its events) plus the core loop's cost when Python runs "
            "embedded in the JVM. The operator's own work (state, timers, metrics, outputs) is left "
            "out, so the bound is more than a job of that shape can reach.",
            "",
        ]
    if emb:
        out += [
            f"The core loop ({emb['events']:,} events, thread CPU time, parse + detect): "
            f"{fmt(core_us(emb['in_job']), 1)} us per event in a thread-mode task, "
            f"{fmt(core_us(emb['in_process']), 1)} us in the "
            f"benchmark's own process: {fmt(emb['factor'], 2)}x.",
            "",
        ]
    if rep.get("floor"):
        bounds = rep.get("bounds", {})
        out += [
            "| shape | floor events/s (wall) | floor events/CPU-s | floor us/event | + core in the JVM us/event "
            "| bound events/CPU-s | bound / plain |",
            "|---|---|---|---|---|---|---|",
        ]
        for f in rep["floor"]:
            b = bounds.get(f["shape"], {})
            out.append(
                f"| {f['shape']} | {fmt(f['eps'])} | {fmt(f['eps_per_cpu_s'])} | {fmt(b.get('floor_us'), 1)} | "
                f"{fmt(b.get('core_us'), 1)} | {fmt(b.get('eps_per_cpu_s'))} | {fmt(b.get('vs_plain'), 2)} |"
            )
        out += [
            "",
            "`pipeline`: this job's shape (entity and timestamp read from the raw line by Flink SQL, "
            "timestamps, an entity's lines grouped and keys in Java, the keyed Python operator, which "
            "parses the lines). `unbatched`: the same with one Python call per line. `single`: "
            "the entity read by Flink SQL, keyed in Java, one Python operator per line, no event time.",
        ]
    low = [j for j in rep.get("throughput", []) if (j.get("cores_used") or 1.0) < 0.5]
    if low:
        out += [
            "",
            "Fewer than 0.5 cores busy ("
            + ", ".join(f"{j['mode']}, {j['metrics']} metrics" for j in low)
            + "): the CPU meter missed part of that job's work (its Python alone keeps a core "
            "busy): trust its wall-clock rate only.",
        ]
    return out


def _latency(rep: dict[str, Any]) -> list[str]:
    """Event-to-score latency at half the maximum rate."""
    out: list[str] = []
    lat = rep.get("latency")
    if lat:
        fs, sc = lat["from_send_ms"], lat["from_schedule_ms"]
        out += [
            "",
            "## Latency (send -> score record out of detect)",
            "",
            f"Paced at {fmt(lat['target_rate'])} events/s (achieved {fmt(lat.get('achieved_send_rate'))}), "
            f"half of {fmt(lat.get('max_rate'))} events/s ({lat.get('max_rate_basis', 'n/a')}), "
            f"{lat['entities']} entities, {lat['samples']:,} samples.",
            "",
            "| from | p50 ms | p90 ms | p99 ms | max ms |",
            "|---|---|---|---|---|",
            f"| send | {fmt(fs['p50'], 1)} | {fmt(fs['p90'], 1)} | {fmt(fs['p99'], 1)} | {fmt(fs['max'], 1)} |",
            f"| schedule | {fmt(sc['p50'], 1)} | | {fmt(sc['p99'], 1)} | |",
        ]
        for extra in lat.get("variants", []):
            e = extra["from_send_ms"]
            out.append(f"| send ({extra['label']}) | {fmt(e['p50'], 1)} | {fmt(e['p90'], 1)} | {fmt(e['p99'], 1)} | {fmt(e['max'], 1)} |")
        low = lat.get("low_latency")
        if low:
            e = low["from_send_ms"]
            out.append(f"| send (`{low['label']}`) | {fmt(e['p50'], 1)} | {fmt(e['p90'], 1)} | {fmt(e['p99'], 1)} | {fmt(e['max'], 1)} |")
            out += ["", f"With `{low['label']}`: unpaced {fmt(low.get('max_rate'))} events/s against "
                    f"{fmt(lat.get('max_rate'))} with the defaults ({fmt(low.get('throughput_ratio_to_default'), 2)}), "
                    "the latency job's marginal rate, measured in this run."]
    return out


def _state(rep: dict[str, Any]) -> list[str]:
    """State per entity, its totals and the checkpoints."""
    out: list[str] = []
    st = rep.get("state")
    if st:
        out += [
            "",
            "## State per entity (encoded ValueState value, plain Python)",
            "",
            "| metrics | snapshot bytes at 1 h / 6 h / 12 h / 24 h / end | steady snapshot | "
            f"+ full journal ({SNAPSHOT_EVERY - 1} events) | encode us | decode+restore us |",
            "|---|---|---|---|---|---|",
        ]
        for s in st["per_metrics"]:
            growth = " / ".join(f"{g['bytes']:,}" for g in s["growth"])
            with_journal = s.get("steady_bytes_with_journal")
            out.append(
                f"| {s['metrics']} | {growth} | {s['steady_bytes']:,} | {fmt(with_journal)} | "
                f"{s['snapshot_encode_us']} | {s['decode_restore_us']} |"
            )
        if st.get("totals"):
            out += ["", "| entities | steady state total (MB) | incl. Flink per-key overhead (MB) |", "|---|---|---|"]
            for tot in st["totals"]:
                out.append(f"| {tot['entities']:,} | {fmt(tot['values_mb'], 1)} | {fmt(tot['with_overhead_mb'], 1)} |")
    for c in rep.get("checkpoint", []):
        out += [
            "",
            f"Checkpoint (MiniCluster, hashmap backend): {c['entities']:,} entities x {c['events_per_entity']} events, "
            f"{c['metrics']} metrics: {c['checkpoint_bytes']:,} bytes; encoded values {c['encoded_values_bytes']:,} bytes "
            f"(mean {fmt(c['mean_encoded_value_bytes'])}); Flink overhead {fmt(c['overhead_bytes_per_key'])} bytes per key.",
        ]
    return out


def _cluster_and_profile(rep: dict[str, Any]) -> list[str]:
    """The standalone cluster and the profile of the plain loop."""
    out: list[str] = []
    cl = rep.get("cluster")
    if cl and "shapes" in cl:
        out += ["", "## Standalone cluster (2 TaskManagers x 1 slot, thread mode)", "",
                f"{cl['entities']} entities, {cl['metrics']} metrics, {cl['events']:,} events per job; "
                "steady state (20-95 % of the events); "
                "CPU = every process of the cluster (JobManager, TaskManagers and their children); "
                "median of the repetitions, spread = max / min - 1 of their ratios.", "",
                "| entities | p1 events/CPU-s | p2 events/CPU-s | p2 / p1 per CPU-s | spread | p1 events/s | p2 events/s | p2 / p1 wall |",
                "|---|---|---|---|---|---|---|---|"]
        for shape, r in cl["shapes"].items():
            label = shape if shape == "uniform" else f"{shape} (s = {cl['zipf_s']})"
            out.append(
                f"| {label} | {fmt(r['p1_eps_per_cpu_s'])} | {fmt(r['p2_eps_per_cpu_s'])} | "
                f"{fmt(r['p2_over_p1_per_cpu_s'], 2)} | {fmt(r['ratio_spread'], 2)} | {fmt(r['p1_eps'])} | "
                f"{fmt(r['p2_eps'])} | {fmt(r['p2_over_p1_wall'], 2)} |"
            )
        ce = cl.get("two_process_ceiling")
        if ce:
            out += ["", f"The machine's own ceiling: the operator's loop (no Flink) in two processes at once "
                    f"runs at {fmt(ce['ratio'], 2)} of its rate alone per CPU-second "
                    f"({fmt(ce['together_eps_per_cpu_s'])} against {fmt(ce['alone_eps_per_cpu_s'])}); "
                    f"p2 / p1 against that: {fmt(cl.get('p2_over_p1_vs_ceiling'), 2)}."]
    pr = rep.get("profile")
    if pr:
        out += ["", f"## Profile of the plain operator loop ({pr['tool']}, {pr['events']:,} events, {pr['metrics']} metrics)", ""]
        out += ["| module | share |", "|---|---|"]
        out += [f"| {r_['what']} | {r_['share'] * 100:.1f} % |" for r_ in pr["by_module"]]
        out += ["", "| phase (call from the loop) | share |", "|---|---|"]
        out += [f"| {r_['what']} | {r_['share'] * 100:.1f} % |" for r_ in pr["by_phase"]]
        if rep["machine"].get("compiled_core"):
            out += ["", "Compiled modules have no Python frames: their time counts under their callers."]
    return out


def _custom(rep: dict[str, Any]) -> list[str]:
    """What each kind of custom model costs beside the default (plain loop)."""
    cm = rep.get("custom_models")
    if not cm:
        return []
    out = ["", "## Custom models (detector.model.custom, plain loop, per CPU-second)", "",
           "| kind | events / CPU-s | ratio to default | state bytes per entity |", "|---|---|---|---|"]
    for kind, r in cm["kinds"].items():
        out.append(f"| {kind} | {r['eps_per_cpu_s']:,} | {r['ratio_to_default']:.2f} | {r['state_bytes_per_entity']:,} |")
    return out


def render_markdown(rep: dict[str, Any]) -> str:
    """The report as markdown tables (also what the console shows)."""
    out = _headline(rep) + _throughput(rep) + _bounds(rep) + _latency(rep) + _state(rep)
    out += _custom(rep) + _cluster_and_profile(rep)
    if rep.get("scale"):
        out += render_scale(rep["scale"])
    errors = rep.get("errors")
    if errors:
        out += ["", "## Parts that failed", ""] + [f"- {e}" for e in errors]
    out += ["", "## Method", "", rep.get("method", METHOD), ""]
    return "\n".join(out)



QUICK_BUDGET_S = 250.0  # --quick starts no part after this (the machine may be loaded)
ALL_PARTS = ("state", "profile", "plain", "thread", "floor", "naive", "latency", "checkpoint", "process", "custom", "cluster", "scale")


