"""The method table's picture: FID against training wall-clock minutes for several distillation runs on one
teacher, one panel per sampling step count, from the curve.json each run's scripts/checkpoint_curve.py wrote.

  python scripts/methods_plot.py --curve LCM=runs/mnist-lcm/curve.json --curve CTM=runs/mnist-ctm/curve.json \
      --point "ADD (mnist.yaml)=25.0:1:3.71" --teacher 2.37 --teacher-minutes 53 --out docs/images/methods-mnist.png

A --point is a finished run scored once: NAME=MINUTES:STEPS:FID. --teacher draws the teacher's best FID and, with
--teacher-minutes, the 0.5x and 1x marks of its training time.
"""

import argparse
import json
import sys
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--curve", action="append", default=[], help="NAME=path/to/curve.json")
    ap.add_argument("--point", action="append", default=[], help="NAME=MINUTES:STEPS:FID")
    ap.add_argument("--teacher", type=float, default=None, help="the teacher's best FID")
    ap.add_argument("--teacher-minutes", type=float, default=None, help="the teacher's training time")
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--title", default="")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {}
    for spec in a.curve:
        name, _, path = spec.partition("=")
        if not Path(path).is_file():
            print(f"methods_plot: error: {path}: no such curve.json", file=sys.stderr)
            return 2
        series[name] = json.loads(Path(path).read_text())["rows"]
    points = []
    for spec in a.point:
        name, _, rest = spec.partition("=")
        try:
            minutes, steps, fid = rest.split(":")
            points.append((name, float(minutes), int(steps), float(fid)))
        except ValueError:
            print(f"methods_plot: error: --point {spec!r}: expected NAME=MINUTES:STEPS:FID", file=sys.stderr)
            return 2
    fig, axes = plt.subplots(1, len(a.steps), figsize=(4.2 * len(a.steps), 3.4), squeeze=False)
    for ax, k in zip(axes[0], a.steps):
        for name, rows in series.items():
            pts = sorted((r["minutes"], r["fid"]) for r in rows if r["steps"] == k)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=name)
        for name, minutes, steps, fid in points:
            if steps == k:
                ax.scatter([minutes], [fid], marker="*", s=90, label=name, zorder=3)
        if a.teacher is not None:
            ax.axhline(a.teacher, color="k", lw=0.8, ls="--", label="teacher's best")
        if a.teacher_minutes:
            for f in (0.5, 1.0):
                ax.axvline(f * a.teacher_minutes, color="grey", lw=0.6, ls=":")
        ax.set_yscale("log")
        ax.set_xlabel("training wall time (min)")
        ax.set_ylabel("FID")
        ax.set_title(f"{k} step{'s' * (k > 1)}", fontsize=9)
    axes[0][0].legend(fontsize=7)
    if a.title:
        fig.suptitle(a.title, fontsize=9)
    fig.tight_layout()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
