"""report.md of a GAN run: what was trained, the evaluation table (FID/KID/class metrics at each
truncation psi), the pictures, and the training curves from metrics.jsonl."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..engine.run_dir import read_metrics
from ..viz import line_plot
from .evaluate import eval_table


def _curves(rows: list[dict], run_dir: Path) -> list[str]:
    """losses.png (loss_d, loss_g over steps) and monitor.png (monitor FID over steps), where logged."""
    out = []
    series = {k: ([r["step"] for r in rows if isinstance(r.get(k), float)],
                  [r[k] for r in rows if isinstance(r.get(k), float)]) for k in ("loss_d", "loss_g")}
    if all(len(v[0]) > 1 for v in series.values()):
        line_plot(series, run_dir / "losses.png", "step", "loss", title="adversarial losses")
        out += ["![losses](losses.png)", ""]
    fid = [(r["step"], r["fid"]) for r in rows if isinstance(r.get("fid"), float)]
    if len(fid) > 1:
        line_plot({"EMA generator": tuple(zip(*fid))}, run_dir / "monitor.png", "step",
                  "FID vs training images (monitor)", title="monitor FID")
        out += ["![monitor FID](monitor.png)", ""]
    return out


PICTURES = {  # write_pictures' keys -> (file, caption)
    "style_mixing": ("style-mixing.png", "Style mixing: coarse styles (the low-resolution layers) from the left "
                     "column's seeds, fine styles from the top row's."),
    "truncation": ("truncation.png", "Truncation sweep: each row one class and one z, psi from 0 (the class's mean "
                   "latent) to 1."),
    "interpolation": ("interpolation.png", "Interpolation: each row from a sample of one class to a sample of the "
                      "next."),
}


def _other_regularisers(gc) -> str:
    """WGAN-GP, drift, orthogonal regularisation and weight clipping, where set: ', name value, ...'."""
    named = (("WGAN-GP lambda", gc.gp_lambda), ("drift", gc.drift), ("orthogonal beta", gc.ortho),
             ("weight clipping", gc.clip or 0))
    return "".join(f", {n} {v:g}" for n, v in named if v > 0)


def write_report(recipe, run_dir, facts: dict, rows: Optional[list[dict]], pictures=PICTURES) -> Path:
    """`facts`: params_g, params_d, steps, seconds_per_step (this process's average); `pictures`: the keys
    of the pictures written (distill.gan.pictures.write_pictures)."""
    run_dir = Path(run_dir)
    g, ec, gc = recipe.generator, recipe.eval, recipe.gan
    metrics = read_metrics(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").is_file() else []
    reg = ", ".join(f"{n} gamma {v:g}" for n, v in (("R1", gc.r1_gamma), ("R2", gc.r2_gamma)) if v > 0) or "none"
    lines = [f"# GAN report: {recipe.name}", "",
             f"`{g.kind}` generator ({facts['params_g'] / 1e6:.2f} M parameters, z {g.z_dim}, width "
             f"{g.width}..{g.max_width}) against a `{recipe.discriminator.kind}` discriminator "
             f"({facts['params_d'] / 1e6:.2f} M trained parameters"
             + (f", {facts['params_d_frozen'] / 1e6:.2f} M frozen" if facts.get("params_d_frozen") else "")
             + f"); loss `{gc.loss}`, regularisation {reg} every "
             f"{gc.reg_every} step(s){_other_regularisers(gc)}, DiffAugment `{gc.augment or 'none'}`. "
             f"{facts['steps']} steps of batch {recipe.train.batch_size} on `{recipe.data.source}` "
             f"({recipe.data.resolution} px, {recipe.data.channels} channel(s))"
             + (f", {facts['seconds_per_step']:.3f} s per step." if facts.get("seconds_per_step") else "."), "",
             "Exported EMA generator: this folder (`distill sample RUN_FOLDER --truncation 0.7 --out grid.png`; "
             "`distill.gan.architectures.load_generator(RUN_FOLDER)`).", ""]
    if rows:
        lines += ["## Evaluation", "",
                  f"{ec.num_samples} class-balanced samples per psi against the `{ec.reference_split}` split, features "
                  f"`{ec.features}`.", "", *eval_table(rows), ""]
        best = min(rows, key=lambda r: r["fid"])
        lines += [f"Best FID {best['fid']:.3f} at psi {best['truncation']:g}. Within-class diversity (mean pairwise "
                  "feature distance) below the real data's means the samples of a class look alike.", ""]
        lines += [f"![samples at psi {r['truncation']:g}](eval/gan-psi{r['truncation']:g}.png)" for r in rows] + [""]
    else:
        lines += ["No evaluation (eval.num_samples = 0).", ""]
    lines += ["## Pictures", ""]
    for key in pictures:
        file, caption = PICTURES[key]
        lines += [caption, "", f"![{key.replace('_', ' ')}](pictures/{file})", ""]
    lines += ["## Training", "",
              *_curves(metrics, run_dir),
              "Sample grids during training: `samples/`; metrics: `metrics.jsonl` (`distill doctor` reads them)."]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
