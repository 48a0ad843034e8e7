"""Latency report: JSON and CSV rows, a markdown table, plots, and the derived checks.

Derived checks (per batch size): the measured teacher-to-student latency ratio beside the ratio of
network evaluations (NFE: steps x 2 with classifier-free guidance), their quotient (`efficiency`,
1.0 = latency scales exactly with network evaluations), and the pipeline overhead (time outside
the networks) as a fraction of the total.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Optional

from ..errors import DistillError
from .latency import BenchResult

CSV_COLUMNS = [
    "model", "kind", "steps", "guidance", "nfe", "params", "batch", "device", "dtype", "channels_last", "compile", "threads",
    "scheduler", "n", "median_s", "mean_s", "p90_s", "p95_s", "p99_s", "std_s", "iqr_s", "min_s", "max_s",
    "images_per_s", "ms_per_image", "cpu_util", "first_call_s", "compile_s", "denoiser_calls", "bare_forward_batch",
    "bare_forward_median_s", "expected_network_s", "overhead_vs_bare_frac", "overhead_vs_bare_medians_frac", "profiled_total_s", "denoiser_s",
    "scheduler_s", "decoder_s", "text_encoder_s", "generator_s", "network_s", "overhead_s", "python_other_s",
    "overhead_frac", "mem_rss_peak_mb", "mem_rss_before_mb", "mem_cuda_max_allocated_mb", "mem_cuda_max_reserved_mb",
    "fid", "error",
]
OVERHEAD_TARGET = 0.10  # student 1-step end-to-end within 10% of bare denoiser forward + decoding
EFFICIENCY_TARGET = 0.9  # teacher/student latency ratio >= 0.9 x their NFE ratio


# ---------------------------------------------------------------- FID


def load_fid(specs: list[str]) -> list[dict]:
    """Rows of eval-<tag>.json files (`distill eval`, the distillation report). A spec is PATH or
    MODEL=PATH; without MODEL the rows' own `model` tag is used, else the file's `eval-<tag>` name."""
    out = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = None, spec
        p = Path(path)
        if not p.is_file():
            raise DistillError(f"--fid-json {path}: no such file")
        try:
            rows = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise DistillError(f"--fid-json {path}: not JSON ({e})") from None
        if not isinstance(rows, list) or not all(isinstance(r, dict) and "steps" in r and "fid" in r for r in rows):
            raise DistillError(f"--fid-json {path}: expected a list of rows with 'steps' and 'fid' (eval-*.json)")
        stem_tag = p.stem[5:] if p.stem.startswith("eval-") else p.stem
        for r in rows:
            out.append({"model": name or r.get("model") or stem_tag, "steps": int(r["steps"]),
                        "guidance": float(r.get("guidance_scale", 1.0) or 1.0), "fid": float(r["fid"]), "source": str(p)})
    return out


def attach_fid(rows: list[dict], fid_rows: list[dict]) -> int:
    """Set row['fid'] where (model, steps, guidance) match; returns the number of FID rows used."""
    index = {(f["model"], f["steps"], round(f["guidance"], 6)): f["fid"] for f in fid_rows}
    used = set()
    for r in rows:
        key = (r["model"], r["steps"], round(r["guidance"], 6))
        if key in index:
            r["fid"] = index[key]
            used.add(key)
    return len(used)


# ---------------------------------------------------------------- derived checks


def _ok(r: dict) -> bool:
    return "error" not in r and r.get("median_s") is not None


def derived_checks(rows: list[dict], paired: Optional[list[dict]] = None) -> dict:
    """Ratios and overheads from the table's rows; where `paired` (BenchResult.paired) has a batch,
    its ratio timed in alternation is the headline instead of the ratio of two rows."""
    ratios, overhead = [], []
    for b in sorted({r["batch"] for r in rows}):
        at = [r for r in rows if r["batch"] == b and _ok(r)]
        students = sorted((r for r in at if r["kind"] == "student"), key=lambda r: r["steps"])
        for s in students:
            if s["steps"] == students[0]["steps"]:
                ov = s.get("overhead_vs_bare_frac")
                overhead.append({"batch": b, "model": s["model"], "steps": s["steps"], "median_s": s["median_s"],
                                 "expected_network_s": s.get("expected_network_s"), "overhead_vs_bare_frac": ov,
                                 "overhead_frac": s.get("overhead_frac"), "scheduler_s": s.get("scheduler_s"),
                                 "python_other_s": s.get("python_other_s"),
                                 "pass": None if ov is None else ov < OVERHEAD_TARGET})
        if not students:
            continue
        s1 = students[0]
        for t in (r for r in at if r["kind"] == "teacher"):
            lat, nfe = t["median_s"] / s1["median_s"], t["nfe"] / s1["nfe"]
            ratios.append({"batch": b, "teacher_steps": t["steps"], "teacher_guidance": t["guidance"],
                           "teacher_nfe": t["nfe"], "student_steps": s1["steps"], "student_nfe": s1["nfe"],
                           "latency_ratio": lat, "nfe_ratio": nfe, "efficiency": lat / nfe})
    headline = []
    alternated = {p["batch"]: p for p in paired or []}
    for b in sorted({r["batch"] for r in ratios} | set(alternated)):
        top = alternated.get(b) or max((r for r in ratios if r["batch"] == b), key=lambda r: r["teacher_nfe"])
        headline.append({**top, "pass": top["efficiency"] >= EFFICIENCY_TARGET})
    return {"teacher_vs_student": ratios, "headline": headline, "student_overhead": overhead,
            "targets": {"overhead_vs_bare_frac_below": OVERHEAD_TARGET, "efficiency_at_least": EFFICIENCY_TARGET}}


# ---------------------------------------------------------------- files


def write_json(result: BenchResult, checks: dict, path: Path, fid_rows: Optional[list[dict]] = None) -> Path:
    path.write_text(json.dumps({"config": result.config, "env": result.env, "rows": result.rows, "paired": result.paired,
                                "paired_gan": result.paired_gan, "checks": checks,
                                "fid": fid_rows or []}, indent=1, default=str))
    return path


def write_csv(rows: list[dict], path: Path) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k) for k in CSV_COLUMNS})
    return path


def _ms(v) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{1e3 * v:.3g}"


def _pct(v) -> str:
    return "" if v is None else f"{100 * v:.1f}%"


def _num(v, fmt="{:.4g}") -> str:
    return "" if v is None else fmt.format(v)


def _count(v) -> str:
    """Parameters: 637k, 1.2M."""
    if v is None:
        return ""
    return f"{v / 1e6:.3g}M" if v >= 1e6 else (f"{v / 1e3:.3g}k" if v >= 1e3 else str(v))


def _mem(r: dict) -> str:
    v = r.get("mem_cuda_max_allocated_mb", r.get("mem_rss_peak_mb"))
    return _num(v, "{:.0f}")


TABLE = [  # (header, cell)
    ("model", lambda r: r["model"]), ("steps", lambda r: str(r["steps"])), ("w", lambda r: f"{r['guidance']:g}"),
    ("NFE", lambda r: str(r.get("nfe", ""))), ("params", lambda r: _count(r.get("params"))),
    ("batch", lambda r: str(r["batch"])),
    ("median ms", lambda r: _ms(r.get("median_s"))), ("p90 ms", lambda r: _ms(r.get("p90_s"))),
    ("p99 ms", lambda r: _ms(r.get("p99_s"))), ("std ms", lambda r: _ms(r.get("std_s"))),
    ("IQR ms", lambda r: _ms(r.get("iqr_s"))), ("img/s", lambda r: _num(r.get("images_per_s"), "{:.1f}")),
    ("n", lambda r: str(r.get("n", ""))), ("min ms", lambda r: _ms(r.get("min_s"))),
    ("CPU/wall", lambda r: _num(r.get("cpu_util"), "{:.2f}")),
    ("denoiser ms", lambda r: _ms(r.get("denoiser_s", r.get("generator_s")))),
    ("sched ms", lambda r: _ms(r.get("scheduler_s"))), ("overhead", lambda r: _pct(r.get("overhead_frac"))),
    ("vs bare fwd", lambda r: _pct(r.get("overhead_vs_bare_frac"))), ("peak MB", _mem),
    ("compile s", lambda r: _num(r.get("compile_s"), "{:.1f}")), ("FID", lambda r: _num(r.get("fid"))),
]


def markdown_table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(h for h, _ in TABLE) + " |", "|" + "---|" * len(TABLE)]
    for r in rows:
        if "error" in r:
            cells = [f(r) if h in ("model", "steps", "w", "batch") else "" for h, f in TABLE]
            cells[[h for h, _ in TABLE].index("median ms")] = f"error: {r['error']}"
        else:
            cells = [f(r) for _, f in TABLE]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def markdown(result: BenchResult, checks: dict) -> str:
    e, c = result.env, result.config
    out = [
        "# Latency benchmark", "",
        f"{e.get('device_name')} ({c['device']}), {c['dtype']}, channels-last {c['channels_last']}, "
        f"compile {c['compile']}, {e.get('torch_threads')} thread(s); torch {e.get('torch')}, "
        f"diffusers {e.get('diffusers')}, distill {e.get('distill')} @ {e.get('git_commit')}; "
        f"load average {e.get('loadavg_start')} -> {e.get('loadavg_end')}.", "",
        f"Warm-up {c['warmup']} calls, then up to {c['repeats']} synchronised calls per row"
        + (f" (budget {c['budget_s']:g} s)" if c.get("budget_s") else "")
        + f"; component split from {c['profile_repeats']} instrumented calls. NFE = denoiser evaluations per image "
        "(steps x 2 with guidance). *overhead* = time outside the networks (scheduler + Python) / total; "
        "*vs bare fwd* = call / (denoiser calls x bare denoiser forward at the same batch + decoder) - 1, the two "
        "timed in alternation and the ratio taken per pair, then its median. *CPU/wall* = process CPU time / wall time over the timed calls: on CPU it should be "
        "close to the thread count; well below means the process was descheduled (shared machine) and the "
        "latencies include waiting: trust *min* over *median* there.", "",
        markdown_table(result.rows), "",
    ]
    threads = c.get("threads") or 1
    busy = [r for r in result.rows if r.get("cpu_util") is not None and c["device"] == "cpu"
            and r["cpu_util"] < 0.8 * threads]
    if busy:
        out += [f"**Warning:** {len(busy)} of {len(result.rows)} rows ran with CPU/wall below 0.8 x {threads} thread(s): "
                "the machine was shared while timing, medians include time spent descheduled.", ""]
    if checks["headline"] or checks["student_overhead"] or result.paired_gan:
        out += ["## Derived checks", ""]
    if checks["teacher_vs_student"]:
        out += ["Teacher versus the fewest-step student, per batch: measured latency ratio beside the ratio of network "
                f"evaluations (efficiency = latency ratio / NFE ratio; target >= {EFFICIENCY_TARGET}).", "",
                "| batch | teacher steps | w | teacher NFE | student steps | latency ratio | NFE ratio | efficiency |",
                "|---|---|---|---|---|---|---|---|"]
        for r in checks["teacher_vs_student"]:
            out.append(f"| {r['batch']} | {r['teacher_steps']} | {r['teacher_guidance']:g} | {r['teacher_nfe']} | "
                       f"{r['student_steps']} | {r['latency_ratio']:.2f} | {r['nfe_ratio']:.0f} | {r['efficiency']:.2f} |")
        out.append("")
        for h in checks["headline"]:
            out.append(f"- batch {h['batch']}: teacher {h['teacher_steps']} steps w={h['teacher_guidance']:g} over "
                       f"student {h['student_steps']} step(s): {h['latency_ratio']:.1f}x measured vs {h['nfe_ratio']:.0f}x "
                       f"NFE -> efficiency {h['efficiency']:.2f} ({'PASS' if h['pass'] else 'FAIL'}, target >= "
                       f"{EFFICIENCY_TARGET})" + (f"; timed in alternation, median of {h['n']} pairs" if h.get("paired")
                                                  else "; ratio of two table rows"))
        out.append("")
    if result.paired_gan:
        out += ["Student (fewest steps) over GAN forward, timed in alternation (median of per-pair ratios; > 1: the "
                "GAN is faster):", ""]
        out += [f"- batch {p['batch']}: student {p['student_steps']} step(s) / {p['gan']} = {p['student_over_gan']:.2f}x "
                f"({p['n']} pairs)" for p in result.paired_gan] + [""]
    if checks["student_overhead"]:
        out += [f"Student pipeline overhead (target: end-to-end within {OVERHEAD_TARGET:.0%} of bare forward + decoder):", ""]
        for o in checks["student_overhead"]:
            status = "n/a" if o["pass"] is None else ("PASS" if o["pass"] else "FAIL")
            out.append(f"- batch {o['batch']}, {o['steps']} step(s): {_ms(o['median_s'])} ms end-to-end vs "
                       f"{_ms(o['expected_network_s'])} ms bare -> {_pct(o['overhead_vs_bare_frac'])} ({status}); "
                       f"instrumented: scheduler {_ms(o['scheduler_s'])} ms, other Python {_ms(o['python_other_s'])} ms, "
                       f"outside networks {_pct(o['overhead_frac'])} of the call")
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------- plots


def _axes(figsize=(7.5, 4.2)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize, dpi=120)
    return plt, fig, ax


def _save(plt, fig, ax, path: Path) -> Path:
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never hides a line
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_latency_vs_steps(rows: list[dict], path: Path) -> Optional[Path]:
    series: dict[str, tuple[list, list]] = {}
    for r in sorted((r for r in rows if _ok(r) and r["kind"] in ("teacher", "student")), key=lambda r: r["steps"]):
        xs, ys = series.setdefault(f"{r['model']} w={r['guidance']:g} b={r['batch']}", ([], []))
        xs.append(r["steps"])
        ys.append(1e3 * r["median_s"])
    if not series:
        return None
    plt, fig, ax = _axes()
    for name, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o", ms=3, label=name, ls="--" if "w=1 " not in name + " " else "-")
    ticks = sorted({x for xs, _ in series.values() for x in xs})
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("sampling steps (log)")
    ax.set_ylabel("median latency per call (ms, log)")
    ax.set_title("latency vs steps (dashed: with guidance)", fontsize=9)
    return _save(plt, fig, ax, path)


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points (latency, fid) not dominated by a faster-and-better one, sorted by latency."""
    front, best = [], math.inf
    for x, y in sorted(points):
        if y < best:
            front.append((x, y))
            best = y
    return front


def plot_pareto(rows: list[dict], path: Path) -> Optional[Path]:
    pts = [r for r in rows if _ok(r) and r.get("fid") is not None]
    if not pts:
        return None
    plt, fig, ax = _axes()
    for b in sorted({r["batch"] for r in pts}):
        at = [r for r in pts if r["batch"] == b]
        xs = [r["ms_per_image"] for r in at]
        ax.scatter(xs, [r["fid"] for r in at], label=f"batch {b}", s=18)
        for r, x in zip(at, xs):
            ax.annotate(f"{r['model'][0].upper()}{r['steps']}" + ("g" if r["guidance"] != 1 else ""), (x, r["fid"]),
                        fontsize=6, xytext=(2, 2), textcoords="offset points")
        front = pareto_front(list(zip(xs, [r["fid"] for r in at])))
        ax.plot([p[0] for p in front], [p[1] for p in front], lw=1, alpha=0.6)
    ax.set_xscale("log")
    fids = [r["fid"] for r in pts]
    if min(fids) > 0 and max(fids) / min(fids) > 20:  # FID spans decades from 1 step to 50
        ax.set_yscale("log")
    ax.set_xlabel("median latency per image (ms, log)")
    ax.set_ylabel("FID")
    ax.set_title("quality vs latency (Pareto front per batch; T=teacher S=student, g=guided)", fontsize=8)
    return _save(plt, fig, ax, path)


def write_report(result: BenchResult, out_dir, fid_rows: Optional[list[dict]] = None, plots: bool = True,
                 stem: str = "latency") -> dict[str, Path]:
    """Write <stem>.json, <stem>.csv, <stem>.md and the plots into `out_dir`; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if fid_rows:
        attach_fid(result.rows, fid_rows)
    checks = derived_checks(result.rows, result.paired)
    files = {"json": write_json(result, checks, out / f"{stem}.json", fid_rows),
             "csv": write_csv(result.rows, out / f"{stem}.csv")}
    (out / f"{stem}.md").write_text(markdown(result, checks) + "\n")
    files["md"] = out / f"{stem}.md"
    if plots:
        p = plot_latency_vs_steps(result.rows, out / f"{stem}-vs-steps.png")
        if p:
            files["plot_steps"] = p
        p = plot_pareto(result.rows, out / f"{stem}-pareto.png")
        if p:
            files["plot_pareto"] = p
    return files
