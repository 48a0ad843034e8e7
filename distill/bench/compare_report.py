"""Files of `distill bench compare`: compare.json (everything measured), compare.md (one table row per
model and step count) and compare-fid-vs-latency.png (FID against latency per image, log x, one
marker per row: circles the teacher, squares the student, triangles the GAN)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

from .report import _axes, _count, _save

MARKERS = {"teacher": "o", "student": "s", "gan": "^"}


def _num(v, fmt: str = "{:.4g}") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)


def _ms(v) -> str:
    return "-" if v is None else f"{1e3 * v:.3g}"


def _hours(s) -> str:
    if s is None:
        return "-"
    return f"{s / 3600:.2f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 60 else f"{s:.3g} s"


def _knob(r: dict) -> str:
    return f"psi {r['truncation']:g}" if r["kind"] == "gan" else f"w {r['guidance']:g}"


def _source(r: dict) -> str:
    src = r.get("quality_source")
    return "-" if src is None else ("evaluated" if src == "evaluated" else f"cached `{Path(src).name}`")


COLUMNS = [  # (header, cell)
    ("model", lambda r: r["label"]), ("steps", lambda r: str(r["steps"])), ("w / psi", _knob),
    ("FID", lambda r: _num(r.get("fid"))), ("KID", lambda r: _num(r.get("kid"))),
    ("class acc", lambda r: _num(r.get("class_acc"), "{:.3f}")),
    ("within-class dist", lambda r: _num(r.get("intra_class_dist"), "{:.3f}")),
    ("p50 ms", lambda r: _ms(r.get("latency_p50_s"))), ("p95 ms", lambda r: _ms(r.get("latency_p95_s"))),
    ("img/s", lambda r: _num(r.get("images_per_s"), "{:.1f}")), ("params", lambda r: _count(r.get("params")) or "-"),
    ("training", lambda r: _hours(r.get("train_wall_s"))), ("quality", _source),
]


def table(rows: list[dict]) -> list[str]:
    lines = ["| " + " | ".join(h for h, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    return lines + ["| " + " | ".join(f(r).replace("|", "/") for _, f in COLUMNS) + " |" for r in rows]


def markdown(result: dict) -> str:
    c, e, rows = result["config"], result["env"], result["rows"]
    real = next((r["real_intra_class_dist"] for r in rows if r.get("real_intra_class_dist") is not None), None)
    out = ["# Teacher vs distilled student vs GAN" + ("s" if len({r.get("name") for r in rows if r["kind"] == "gan"}) > 1
                                                       else ""), "",
           f"Quality: {c['num_samples']} class-balanced samples per row (seed {c['seed']}) against the `{c['split']}` "
           f"split of `{c['data']}`, features `{c['features']}`; *within-class dist* = mean pairwise feature distance "
           f"within a class (real data: {_num(real, '{:.3f}')}; far below it, the samples of a class look alike). "
           f"Latency: batch {c['batch']}, {c['dtype']} on {e.get('device_name')} ({c['device']}), {c['threads']} "
           f"thread(s), warm-up {c['warmup']}, up to {c['repeats']} timed calls per row, all models in one run; "
           "p50/p95 per call, images/s = batch / p50. Training: wall time from metrics.jsonl or the model card.", "",
           *table(rows), ""]
    for p in result.get("paired") or []:
        out.append(f"- Timed in alternation at batch {p['batch']}: teacher {p['teacher_steps']} steps "
                   f"w={p['teacher_guidance']:g} / student {p['student_steps']} step(s) = {p['latency_ratio']:.1f}x.")
    for p in result.get("paired_gan") or []:
        out.append(f"- Timed in alternation at batch {p['batch']}: student {p['student_steps']} step(s) / "
                   f"{p['gan']} forward = {p['student_over_gan']:.2f}x.")
    out += [f"- {n}" for n in result.get("notes", [])]
    out += [f"- {r['label']}: no latency ({r['latency_error']})" for r in rows if r.get("latency_error")]
    sources = {r.get("name", r["kind"]): r["train_wall_source"] for r in rows if r.get("train_wall_source")}
    out += [f"- {kind} training time from `{src}`" for kind, src in sources.items()]
    return "\n".join(out + ["", "![FID vs latency](compare-fid-vs-latency.png)", ""])


def plot(rows: list[dict], path: Path) -> Optional[Path]:
    """FID against latency per image (ms, log x), one marker per row."""
    pts = [r for r in rows if r.get("fid") is not None and r.get("ms_per_image")]
    if not pts:
        return None
    plt, fig, ax = _axes()
    for r in pts:
        ax.scatter([r["ms_per_image"]], [r["fid"]], marker=MARKERS.get(r["kind"], "x"), s=40, label=r["label"])
        ax.annotate(r["label"], (r["ms_per_image"], r["fid"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    fids = [r["fid"] for r in pts]
    if min(fids) > 0 and max(fids) / min(fids) > 20:
        ax.set_yscale("log")
    ax.set_xlabel("latency per image, p50 (ms, log)")
    ax.set_ylabel("FID")
    ax.set_title("quality vs latency: teacher (o), distilled student (s), GAN (^)", fontsize=8)
    return _save(plt, fig, ax, path)


def write_compare(result: dict, out_dir) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "compare.json", "md": out / "compare.md"}
    files["json"].write_text(json.dumps(result, indent=1, default=str))
    files["md"].write_text(markdown(result))
    p = plot(result["rows"], out / "compare-fid-vs-latency.png")
    if p:
        files["plot"] = p
    return files
