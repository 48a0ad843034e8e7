"""The GAN kinds side by side: quality from each run's own evaluation (eval/eval-gan.json), size and training
facts from its metrics.jsonl and checkpoints, latency of every generator timed in one `distill bench latency`
run (batch 1 and 64), and translation equivariance (EQ-T, StyleGAN3 paper) of the style-based kinds.

    PYTHONPATH=. python benchmarks/gan_kinds.py NAME=RUN [NAME=RUN ...] --out benchmarks/results/gan-kinds-mnist

writes `<out>.json` (everything) and `<out>.md` (the table of docs/results/gan.md). One thread.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from distill.bench import BenchConfig, run_benchmark  # noqa: E402
from distill.engine.checkpoint import checkpoint_dirs  # noqa: E402
from distill.engine.run_dir import read_metrics, wall_seconds  # noqa: E402
from distill.gan.architectures import StyleBased, load_generator  # noqa: E402


def run_facts(run: Path) -> dict:
    """Kinds, loss, parameters, steps, training wall and CPU budget of a `task: gan` run folder."""
    import yaml

    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    rows = read_metrics(run / "metrics.jsonl")
    head = rows[0]
    meta = json.loads((checkpoint_dirs(run)[-1] / "state.json").read_text())  # the newest checkpoint
    train = recipe["train"]
    return {"generator": recipe["generator"]["kind"], "discriminator": recipe["discriminator"]["kind"],
            "loss": recipe["gan"]["loss"], "params_g": head.get("params_g"), "params_d": head.get("params_d"),
            "steps": meta["step"], "batch_size": train["batch_size"], "wall_s": round(wall_seconds(rows), 1),
            "budget": f"{train.get('max_minutes')} min ({train.get('budget_clock')} clock)",
            "trained_seconds": meta.get("trained_seconds")}


def quality(run: Path) -> list[dict]:
    rows = json.loads((run / "eval" / "eval-gan.json").read_text())
    keep = ("truncation", "fid", "kid", "class_acc", "class_coverage", "intra_class_dist", "real_intra_class_dist",
            "num_samples", "features", "reference_split")
    return [{k: r.get(k) for k in keep} for r in rows]


def equivariance(run: Path) -> dict | None:
    """EQ-T and EQ-T_frac (dB) of a style-based generator, else None."""
    from distill.gan.equivariance import eqt_psnr

    G = load_generator(run)
    if not isinstance(G, StyleBased):
        return None
    return {"eqt": round(eqt_psnr(G, num_samples=256, fractional=False), 2),
            "eqt_frac": round(eqt_psnr(G, num_samples=256, fractional=True), 2)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", metavar="NAME=RUN")
    ap.add_argument("--out", required=True)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--repeats", type=int, default=10)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    runs = {spec.partition("=")[0]: Path(spec.partition("=")[2]) for spec in a.runs}
    res = {name: {"run": str(run), **run_facts(run), "quality": quality(run)} for name, run in runs.items()}
    bench = run_benchmark(BenchConfig(gans=[f"{n}={r}" for n, r in runs.items()], batch_sizes=a.batch_sizes,
                                      warmup=2, repeats=a.repeats, profile_repeats=0, threads=1), progress=False)
    for row in bench.rows:
        res[row["model"]].setdefault("images_per_s", {})[row["batch"]] = row.get("images_per_s")
    for name, run in runs.items():
        try:
            res[name]["eqt"] = equivariance(run)
        except Exception as e:  # a metric that does not apply to a kind is reported, not fatal
            res[name]["eqt"] = {"error": str(e).splitlines()[0][:200]}
    env = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
           "torch": torch.__version__, "threads": 1, "command": " ".join(sys.argv), "bench_env": bench.env}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"env": env, "runs": res}, indent=1, default=str))
    md = table(res, a.batch_sizes)
    out.with_suffix(".md").write_text(md + "\n")
    print(md)
    return 0


def _ips(r: dict, batch: int) -> float:
    """Images per second at `batch` (keys are ints when measured, strings when read back from the JSON)."""
    ips = r.get("images_per_s") or {}
    return ips.get(batch) or ips.get(str(batch)) or 0.0


def table(res: dict, batches: list[int]) -> str:
    head = ["GAN", "G / D", "loss", "steps", "psi", "FID", "KID x 1000", "class acc", "within-class (real)",
            "params G", *[f"img/s b{b}" for b in batches], "EQ-T / frac dB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in res.items():
        eq = r.get("eqt") or {}
        eqt = f"{eq['eqt']:.1f} / {eq['eqt_frac']:.1f}" if "eqt" in eq and "eqt_frac" in eq else "-"
        for q in r["quality"]:
            cells = [name, f"{r['generator']} / {r['discriminator']}", r["loss"], str(r["steps"]),
                     f"{q['truncation']:g}", f"{q['fid']:.2f}", f"{q['kid']:.2f}", f"{q['class_acc']:.3f}",
                     f"{q['intra_class_dist']:.2f} ({q['real_intra_class_dist']:.2f})",
                     f"{r['params_g'] / 1e6:.2f} M",
                     *[f"{_ips(r, b):.0f}" for b in batches], eqt]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
