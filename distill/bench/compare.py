"""`distill bench compare`: the teacher, the distilled student and one or more GANs side by side,
measured in one run on one machine at one batch:

  teacher  50 steps without guidance, 50 steps at `guidance`, and its best step count (the lowest-FID
           row of its eval-teacher.json, or `teacher_best_steps`)
  student  each of `student_steps` (its own scheduler, no guidance: distilled in)
  GAN      each of `gans` ([NAME=]PATH; NAME defaults to the folder's name): one forward at truncation
           psi 1 and at its best psi (`truncation`, or the lowest-FID row of its eval-gan.json)

Columns: FID, KID, class accuracy and within-class feature distance (distill.eval, on the same
reference data and features), latency p50/p95 per call, images/s and parameters (distill.bench's
harness, all models in one run), and training wall time (metrics.jsonl, or a model card's metadata).
Quality rows are reused from an eval JSON next to the model, in its run folder or in the output
folder when they were measured with the same number of samples, features, seed, sampler and
guidance (truncation); anything else is evaluated here with `num_samples` samples.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from ..cards import training_seconds
from ..engine.run_dir import read_metrics, wall_seconds
from ..errors import DistillError

TEACHER_STEPS = 50


@dataclass
class CompareConfig:
    teacher: str  # pipeline folder (a teacher run folder is one), or shipped:<name>
    student: str  # pipeline folder (a distillation run folder is one)
    gans: list[str]  # [NAME=]PATH of exported GAN generator folders of any kind (a `task: gan` run folder is one)
    out: str = "runs/compare"
    data: str = "digits"  # reference data source (digits, .npz, image folder, Hub name)
    split: str = "test"  # reference split FID compares against
    features: str = "classifier:digits"  # classifier:<name|path> | inception
    num_samples: int = 2000  # samples per row when a row is evaluated here
    eval_batch_size: int = 500
    seed: int = 1234  # latents and labels of the scored samples
    guidance: float = 2.0  # the teacher's guided row
    teacher_best_steps: Optional[int] = None  # default: the best row of the teacher's eval-teacher.json
    student_steps: list[int] = field(default_factory=lambda: [1, 2, 4])
    truncation: Optional[float] = None  # the GAN's best psi; default: the best row of its eval-gan.json
    batch: int = 64  # latency batch
    device: str = "cpu"
    dtype: str = "fp32"
    threads: int = 1
    warmup: int = 3
    repeats: int = 10
    budget_s: float = 0.0
    pairs: bool = True  # time teacher/student and student/GAN ratios in alternation too
    guided_quality: bool = True  # score the guided 50-step row (2x the NFE of the unguided one); else time it only


@dataclass
class Model:
    """A model to compare: the folder to load, and the folders that may hold its eval JSONs,
    metrics.jsonl or model card (the model folder, its run folder)."""

    path: Path
    homes: list[Path]


def resolve(spec: str, what: str, is_model, sub: str, kind: str) -> Model:
    """`spec` is the model folder itself (a run folder holds its export itself), or a run folder of the earlier
    layout holding it under `sub`."""
    p = Path(spec)
    if p.is_dir() and is_model(p):
        return Model(p, [p, p.parent])
    if p.is_dir() and is_model(p / sub):
        return Model(p / sub, [p / sub, p])
    if not p.exists():
        raise DistillError(f"{what} {p}: not found")
    raise DistillError(f"{what} {p}: not {kind} folder nor a run folder with {sub}/")


def is_pipeline(p: Path) -> bool:
    return (p / "model_index.json").is_file()


def gan_names(specs: list[str]) -> list[tuple[str, str]]:
    """[NAME=]PATH -> (name, path); the name defaults to the folder's name; names must differ."""
    out = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        name, path = (name, path) if sep else (Path(spec).name or spec, spec)
        if not name or not path:
            raise DistillError(f"--gan {spec}: expected [NAME=]PATH")
        out.append((name, path))
    names = [n for n, _ in out]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise DistillError(f"--gan: the name '{dup}' is given twice (use NAME=PATH)")
    return out


GAN_KEY = "gan:"  # models' key of a GAN: "gan:<name>"


def gan_models(models: dict[str, Model]) -> dict[str, Model]:
    """name -> Model of every GAN among `models`."""
    return {k[len(GAN_KEY):]: m for k, m in models.items() if k.startswith(GAN_KEY)}


def resolve_all(cfg: CompareConfig) -> dict[str, Model]:
    """'teacher', 'student' and 'gan:<name>' for each GAN."""
    from ..diffusion.teachers import resolve_teacher_path
    from ..gan.architectures import is_generator_folder

    if not cfg.gans:
        raise DistillError("--gan: give at least one GAN generator folder")
    models = {"teacher": resolve(resolve_teacher_path(cfg.teacher), "--teacher", is_pipeline, "pipeline",
                                 "a pipeline (model_index.json)"),
              "student": resolve(cfg.student, "--student", is_pipeline, "pipeline", "a pipeline (model_index.json)")}
    for name, path in gan_names(cfg.gans):
        models[GAN_KEY + name] = resolve(path, "--gan", is_generator_folder, "generator",
                                        "a GAN generator (config.json naming a generator class)")
    return models


# ---------------------------------------------------------------- what is compared


def best_row(homes: list[Path], tag: str) -> Optional[dict]:
    """The lowest-FID row of the first eval/eval-<tag>.json among `homes`."""
    for h in homes:
        f = h / "eval" / f"eval-{tag}.json"
        try:
            rows = json.loads(f.read_text()) if f.is_file() else None
        except (OSError, ValueError):
            rows = None
        rows = [r for r in rows or [] if isinstance(r, dict) and isinstance(r.get("fid"), (int, float))]
        if rows:
            return min(rows, key=lambda r: r["fid"])
    return None


def plan(cfg: CompareConfig, models: dict[str, Model], conditional: bool) -> tuple[list[dict], list[str]]:
    """The rows to measure, each {label, kind, steps, guidance | truncation, best}, and notes."""
    notes = []
    teacher = [(TEACHER_STEPS, 1.0)]
    if conditional and cfg.guidance != 1.0:
        teacher.append((TEACHER_STEPS, cfg.guidance))
    elif cfg.guidance != 1.0:
        notes.append("the teacher is unconditional: no guided row")
    best = None
    if cfg.teacher_best_steps:
        best = (cfg.teacher_best_steps, 1.0)
    else:
        r = best_row(models["teacher"].homes, "teacher")
        if r is not None:
            best = (int(r["steps"]), float(r.get("guidance_scale", 1.0) or 1.0))
            notes.append(f"teacher's best step count {best[0]} (guidance {best[1]:g}) from its eval-teacher.json")
        else:
            notes.append("no eval-teacher.json beside the teacher and no --teacher-best-steps: no best-steps row")
    if best is not None and best not in teacher:
        teacher.append(best)
    rows = [{"kind": "teacher", "steps": s, "guidance": w, "best": (s, w) == best} for s, w in teacher]
    rows += [{"kind": "student", "steps": s, "guidance": 1.0, "best": False} for s in cfg.student_steps]
    for name, gan in gan_models(models).items():
        psi = cfg.truncation
        if psi is None:
            r = best_row(gan.homes, "gan")
            if r is not None and "truncation" in r:
                psi = float(r["truncation"])
                notes.append(f"{name}: best truncation psi {psi:g} from its eval-gan.json")
        rows += [{"kind": "gan", "name": name, "steps": 1, "truncation": p, "best": p == psi}
                 for p in [1.0] + ([psi] if psi not in (None, 1.0) else [])]
    for r in rows:
        r["label"] = label(r)
    return rows, notes


def label(r: dict) -> str:
    if r["kind"] == "gan":
        return f"GAN {r['name']} psi={r['truncation']:g}"
    text = f"{r['kind']} {r['steps']} step{'s' if r['steps'] > 1 else ''}"
    return text + (f" w={r['guidance']:g}" if r["guidance"] != 1.0 else "") + (" (best)" if r["best"] else "")


# ---------------------------------------------------------------- quality


def _eval_cfg(cfg: CompareConfig):
    from ..config import EvalConfig

    return EvalConfig(num_samples=cfg.num_samples, batch_size=cfg.eval_batch_size, features=cfg.features,
                      reference_split=cfg.split, seed=cfg.seed)


def _data_cfg(cfg: CompareConfig):
    from ..config import DataConfig

    return DataConfig(source=cfg.data)


def cached(files: list[Path], ec, key: str, values: list, **fields) -> dict:
    """value -> the first matching row among `files` (distill.eval.evaluate.matching_rows), with its file."""
    from ..eval.evaluate import matching_rows

    found = {}
    for v in values:
        hit = next(((f, rows[0]) for f in files for rows in [matching_rows(f, ec, key, [v], **fields)] if rows), None)
        if hit:
            found[v] = {**hit[1], "quality_source": str(hit[0])}
    return found


def pipeline_quality(pipe, homes: list[Path], out: Path, kind: str, steps: list[int], w: float, sampler: str,
                     cfg: CompareConfig, weights: Optional[str] = None) -> dict[int, dict]:
    """steps -> eval row: cached where one matches, the rest evaluated into `out`/eval (tag kind[-w<w>])."""
    from ..eval.evaluate import evaluate_pipeline

    ec = _eval_cfg(cfg)
    tag = kind if w == 1.0 else f"{kind}-w{w:g}"
    files = [h / "eval" / f"eval-{t}.json" for h in homes + [out] for t in dict.fromkeys([kind, tag])]
    found = cached(files, ec, "steps", steps, scheduler=sampler, guidance_scale=w,
                   **({"weights": weights} if weights else {}))  # a student's rows: of these weights only
    missing = [s for s in steps if s not in found]
    if missing:
        rows = evaluate_pipeline(pipe, ec, _data_cfg(cfg), out / "eval", tag=tag, scheduler=sampler, steps=missing,
                                 guidance_scale=w, weights=weights)
        found.update({r["steps"]: {**r, "quality_source": "evaluated"} for r in rows})
    return found


def gan_quality(G, homes: list[Path], out: Path, psis: list[float], cfg: CompareConfig) -> dict[float, dict]:
    """psi -> eval row: cached where one matches, the rest evaluated into `out`/eval (eval-gan.json)."""
    from ..eval.fid import feature_extractor
    from ..gan.evaluate import evaluate_generator
    from ..gan.recipe import GANEvalConfig

    found = cached([h / "eval" / "eval-gan.json" for h in homes + [out]], _eval_cfg(cfg), "truncation", psis)
    missing = [p for p in psis if p not in found]
    if missing:
        gcfg = GANEvalConfig(num_samples=cfg.num_samples, truncation=missing, batch_size=cfg.eval_batch_size,
                             features=cfg.features, reference_split=cfg.split, seed=cfg.seed, monitor_samples=0)
        rows = evaluate_generator(G, gcfg, _data_cfg(cfg), out / "eval", feature_extractor(cfg.features))
        found.update({r["truncation"]: {**r, "quality_source": "evaluated"} for r in rows})
    return found


# ---------------------------------------------------------------- training time


def train_wall(homes: list[Path]) -> tuple[Optional[float], Optional[str]]:
    """Seconds of training from the first metrics.jsonl among `homes`, else from a model card's metadata
    (`distill.training_seconds` of README.md, as distill/assets/teachers/* ship it); (None, None) when neither says."""
    for h in homes:
        f = h / "metrics.jsonl"
        if f.is_file():
            try:
                secs = wall_seconds(read_metrics(f))
            except (OSError, ValueError):
                continue
            if secs > 0:
                return secs, str(f)
    for h in homes:
        secs = training_seconds(h)
        if secs:
            return secs, str(h / "README.md")
    return None, None


# ---------------------------------------------------------------- latency


def latency(cfg: CompareConfig, models: dict[str, Model], rows: list[dict]):
    """All models in one `run_benchmark` at `cfg.batch` -> (BenchResult, {(kind, steps, guidance): row})."""
    from .latency import BenchConfig, run_benchmark

    t_steps = sorted({r["steps"] for r in rows if r["kind"] == "teacher"}, reverse=True)
    guided = [r["guidance"] for r in rows if r["kind"] == "teacher" and r["guidance"] != 1.0]
    bc = BenchConfig(teacher=str(models["teacher"].path), student=str(models["student"].path),
                     gans=[f"{n}={m.path}" for n, m in gan_models(models).items()], batch_sizes=[cfg.batch], teacher_steps=t_steps,
                     student_steps=list(cfg.student_steps), guidance=guided[0] if guided else 1.0,
                     device=cfg.device, dtype=cfg.dtype, threads=cfg.threads, warmup=cfg.warmup,
                     repeats=cfg.repeats, budget_s=cfg.budget_s, profile_repeats=0, seed=0, pair_headline=cfg.pairs)
    res = run_benchmark(bc, progress=False)
    return res, {(r["model"] if r["kind"] == "gan" else r["kind"], r["steps"], r["guidance"]): r for r in res.rows}


# ---------------------------------------------------------------- the run


def validate(cfg: CompareConfig) -> dict[str, Model]:
    """Everything that can be checked before any work: one-line errors."""
    from ..eval.fid import feature_extractor

    if cfg.teacher_best_steps is not None and cfg.teacher_best_steps < 1:
        raise DistillError("--teacher-best-steps must be >= 1")
    if not cfg.student_steps or any(s < 1 for s in cfg.student_steps):
        raise DistillError("--student-steps must be positive integers")
    if cfg.num_samples < 2:
        raise DistillError("--num-samples must be >= 2")
    models = resolve_all(cfg)
    feature_extractor(cfg.features)  # a missing classifier fails now, not after the teacher's sampling
    return models


def check_student_steps(student, steps: list[int]) -> None:
    """A student exported with K timesteps samples in at most K steps: say so before any sampling."""
    for s in steps:
        sched = type(student.scheduler).from_config(student.scheduler.config)
        try:
            sched.set_timesteps(s)
        except ValueError as e:
            raise DistillError(f"--student-steps {s}: the student's {type(sched).__name__} cannot sample in {s} steps "
                               f"({str(e).splitlines()[0]})") from None


def run_compare(cfg: CompareConfig) -> dict:
    """Measure everything; returns {config, env, rows, paired, paired_gan, notes} (compare_report writes it)."""
    from ..diffusion.sampling import default_sampler
    from ..gan.architectures import load_generator
    from ..engine.checkpoint import weights_fingerprint
    from .latency import BenchConfig
    from .models import load_pipeline

    models = validate(cfg)
    out = Path(cfg.out)
    torch.set_num_threads(cfg.threads)
    fp32 = BenchConfig(device=cfg.device)  # sampled for quality in fp32 on the device
    teacher = load_pipeline(str(models["teacher"].path), fp32)
    student = load_pipeline(str(models["student"].path), fp32)
    gans = {n: load_generator(m.path).to(cfg.device) for n, m in gan_models(models).items()}
    check_student_steps(student, cfg.student_steps)
    rows, notes = plan(cfg, models, teacher.num_classes is not None)

    quality: dict[tuple, dict] = {}
    sampler = default_sampler(teacher.scheduler.config)  # ddim, or flow-euler for a flow teacher
    scored = [r for r in rows if r["kind"] == "teacher" and (cfg.guided_quality or r["guidance"] == 1.0)]
    if not cfg.guided_quality and len(scored) < sum(r["kind"] == "teacher" for r in rows):
        notes.append(f"the guided teacher row (w {cfg.guidance:g}) is timed, not scored (--no-guided-quality)")
    for w in dict.fromkeys(r["guidance"] for r in scored):
        steps = [r["steps"] for r in scored if r["guidance"] == w]
        # the distillation report's teacher evaluation (its run folder's eval/eval-teacher.json) counts too
        homes = models["teacher"].homes + models["student"].homes[1:]
        for s, q in pipeline_quality(teacher, homes, out, "teacher", steps, w, sampler, cfg).items():
            quality[("teacher", s, w)] = q
    for s, q in pipeline_quality(student, models["student"].homes, out, "student", list(cfg.student_steps), 1.0,
                                 "pipeline", cfg, weights=weights_fingerprint(student.unet)).items():
        quality[("student", s, 1.0)] = q
    for name, G in gans.items():
        psis = [r["truncation"] for r in rows if r["kind"] == "gan" and r["name"] == name]
        for p, q in gan_quality(G, models[GAN_KEY + name].homes, out / name, psis, cfg).items():
            quality[(GAN_KEY + name, 1, p)] = q
    del teacher, student, gans

    bench, lat = latency(cfg, models, rows)
    walls = {k: train_wall(m.homes) for k, m in models.items()}
    for r in rows:
        gan = r["kind"] == "gan"
        model = GAN_KEY + r["name"] if gan else r["kind"]
        q = quality.get((model, r["steps"], r["truncation"] if gan else r["guidance"]), {})
        r.update({k: q.get(k) for k in ("fid", "kid", "class_acc", "class_coverage", "intra_class_dist",
                                         "real_intra_class_dist", "num_samples", "quality_source")})
        t = lat.get((r["name"] if gan else r["kind"], r["steps"], 1.0 if gan else r["guidance"]), {})
        r.update(batch=cfg.batch, nfe=t.get("nfe"), params=t.get("params"), latency_p50_s=t.get("median_s"),
                 latency_p95_s=t.get("p95_s"), images_per_s=t.get("images_per_s"), ms_per_image=t.get("ms_per_image"),
                 latency_n=t.get("n"), latency_error=t.get("error") if t else "not timed")
        r["train_wall_s"], r["train_wall_source"] = walls[model]
    notes.append("latency of a GAN row at psi != 1 is the psi 1 forward's (truncation adds one lerp of w)")
    notes.append("student training time is the distillation's alone (the teacher's is its own row)")
    return {"config": dataclasses.asdict(cfg), "env": bench.env, "rows": rows, "paired": bench.paired,
            "paired_gan": bench.paired_gan, "notes": notes,
            "models": {k: {"path": str(m.path), "homes": [str(h) for h in m.homes]} for k, m in models.items()}}
