"""Model cards of exported models through huggingface_hub's `ModelCard`: the YAML metadata the Hub reads
(library_name, pipeline_tag, base_model, datasets, tags, and a model-index with the FID of every sampler
setting scored), then the prose. Every number comes from the run's own files (its `eval-<tag>.json` rows,
`metrics.jsonl`); the facts machines read back sit under the card's `distill` key (`training_seconds`,
which `distill bench compare` uses), so nothing is parsed out of prose.

Each export sits at its run folder (diffusers' layout) and its card is the folder's README.md: `teacher_card`
(also by scripts/ship_teacher.py), `student_card` (pixel students), `latent_student_card` (SD, SDXL, SD3, Flux
students), `gan_card`, `translator_card`; `classifier_card` is `<classifier>.md` beside an evaluation
classifier's safetensors. `ModelCard.load(path)` reads each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

PIPELINE_TAG = "unconditional-image-generation"  # the Hub task of pixel diffusion pipelines (DDPMPipeline's)
LOAD = "`DiffusionPipeline.from_pretrained(path)` after `import distill` (or `DistillPipeline.from_pretrained(path)`)"


def hub_id(source: str) -> Optional[str]:
    """`source` where it names a Hub repository (`org/name`, not a local path nor `shipped:`), else None."""
    if not source or source.startswith((".", "/", "~")) or ":" in source or source.count("/") != 1:
        return None
    return None if Path(source).exists() else source


def _setting(row: dict) -> str:
    if "truncation" in row:  # a GAN's row: one per truncation psi
        return f"truncation psi {row['truncation']:g}"
    from .eval.evaluate import setting_name

    return setting_name(row)


def fid_results(rows: list[dict], data_source: str, split: str) -> list:
    """One model-index entry per eval row: its FID, named by its setting, with its features and sample count."""
    from huggingface_hub import EvalResult

    name = hub_id(data_source) or Path(data_source).name
    return [EvalResult(task_type=PIPELINE_TAG, dataset_type=name, dataset_name=name, dataset_split=split,
                       metric_type="fid", metric_value=round(float(r["fid"]), 4), metric_name=f"FID, {_setting(r)}",
                       metric_config=f"{r['features']} features, {r['num_samples']} samples"
                                     + ("" if "truncation" in r else f", {r.get('scheduler', 'pipeline')} sampler"))
            for r in rows]


def fid_table(rows: list[dict], cols: tuple = ("steps", "guidance_scale", "fid", "kid", "class_acc",
                                                "intra_class_dist")) -> list[str]:
    """The eval rows as a markdown table (lines) of columns `cols`."""
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(f"{r[c]:.4g}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in cols)
                   + " |")
    return out


def build_card(title: str, body: list[str], *, rows: list[dict], data_source: str, split: str, tags: list[str],
               facts: dict, base_model: Optional[str] = None, library: str = "diffusers",
               pipeline_tag: str = PIPELINE_TAG, results: Optional[list] = None):
    """A ModelCard: metadata (`library`, the pipeline tag, base_model, the data set where it is a Hub one, tags,
    the FID model-index of `rows` or the given `results`, `facts` under `distill`), then `# title` and `body`."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(library_name=library, pipeline_tag=pipeline_tag, base_model=base_model,
                         datasets=[hub_id(data_source)] if hub_id(data_source) else None,
                         tags=["distill", library, *tags], model_name=title,
                         eval_results=(results if results is not None else fid_results(rows, data_source, split)) or None,
                         distill={k: v for k, v in facts.items() if v is not None})
    return ModelCard("\n".join(["---", data.to_yaml(), "---", "", f"# {title}", "", *body, ""]))


def _conditioning(unet) -> tuple[str, str]:
    classes = getattr(unet.config, "num_class_embeds", None)
    if classes:
        return "class-conditional", f"class-conditional ({classes - 1} classes and a null class for guidance)"
    return "unconditional", "unconditional"


def teacher_card(recipe, unet, rows: list[dict], wall_seconds: Optional[float], steps: Optional[int],
                 final_loss: Optional[float], hardware: str, notes: tuple = (), commit: Optional[str] = None,
                 name: Optional[str] = None, plot: Optional[str] = None):
    """The card of a trained teacher: its architecture and objective, training facts, the FID of each setting
    (`plot`: a picture of them, relative to the card)."""
    tag, cond = _conditioning(unet)
    n_params = sum(p.numel() for p in unet.parameters())
    size, ec = unet.config.sample_size, recipe.eval
    wall = f", wall time {wall_seconds / 60:.1f} min" if wall_seconds else ""
    body = [f"A {cond} pixel-space diffusion model (diffusers `{type(unet).__name__}`, {n_params / 1e6:.2f} M "
            f"parameters, {size}x{size}, {objective(recipe.teacher)}"
            + (f", classifier-free guidance label dropout {recipe.teacher.cond_drop_prob}" if tag != "unconditional" else "")
            + "), EMA weights, trained with distill.", "",
            f"- recipe: `recipe.yaml` (task teacher; data `{recipe.data.source}`)",
            *([f"- at commit `{commit}`"] if commit else []),
            f"- training: {steps} steps of batch {recipe.train.batch_size}"
            + (f", final loss {final_loss:.4f}" if final_loss is not None else "") + wall + f" ({hardware})",
            *[f"- {n}" for n in notes], f"- load: {LOAD}", ""]
    if rows:
        best = min(rows, key=lambda r: r["fid"])
        body += [f"## FID ({rows[0]['num_samples']} samples, features `{rows[0]['features']}`, reference split "
                 f"`{ec.reference_split}`, {rows[0].get('scheduler', '')} sampler)", "", *fid_table(rows), "",
                 *([f"![FID vs steps]({plot})", ""] if plot else []), f"Best: {_setting(best)}, FID {best['fid']:.3f}."]
    facts = {"task": "teacher", "training_steps": steps, "batch_size": recipe.train.batch_size,
             "training_seconds": round(wall_seconds, 1) if wall_seconds else None, "hardware": hardware,
             "parameters": n_params, "data": recipe.data.source, "commit": commit}
    return build_card(f"distill teacher: {name or recipe.name}", body, rows=rows, data_source=recipe.data.source,
                      split=ec.reference_split, tags=["diffusion", tag], facts=facts)


def objective(t) -> str:
    """A teacher's training objective in a few words: rectified flow, or the DDPM prediction and beta schedule."""
    if t.prediction_type == "flow":
        return (f"rectified flow (velocity), {t.timestep_sampling} sigmas"
                f"{f' (mean {t.logit_mean}, std {t.logit_std})' if t.timestep_sampling == 'logit_normal' else ''}, "
                f"shift {t.flow_shift}")
    target = {"epsilon": "epsilon prediction", "v_prediction": "v-prediction", "sample": "x0 prediction"}
    return f"{target.get(t.prediction_type, t.prediction_type)}, {t.beta_schedule} schedule"


def student_card(recipe, unet, rows: list[dict], teacher_best: dict, wall_seconds: Optional[float], hardware: str,
                 steps: Optional[int], method: str):
    """The card of a distilled student: base_model = its teacher (where that is a Hub id), the FID at each
    step count beside the teacher's best setting; `steps`: the steps it trained (train.max_minutes may end a run
    before train.max_steps), `method`: its objective in words (distill.distillation.recipe.method_name)."""
    tag, cond = _conditioning(unet)
    teacher, ec = recipe.distill.teacher, recipe.eval
    wall = f"{wall_seconds / 60:.1f} min ({hardware})" if wall_seconds else hardware
    body = [f"A {cond} {len(recipe.distill.student_timesteps)}-timestep student distilled with distill from the "
            f"teacher `{teacher}` ({method}), sampled in 1 to "
            f"{max(r['steps'] for r in rows) if rows else 4} steps without guidance.", "",
            f"- recipe: `recipe.yaml` of the run (task distill; data `{recipe.data.source}`)",
            f"- training: {steps} steps of batch {recipe.train.batch_size}, {wall}",
            f"- load: {LOAD}", "",
            f"## FID ({ec.num_samples} samples, features `{ec.features}`, reference split `{ec.reference_split}`)", "",
            *fid_table(rows), "",
            f"The teacher's best: {_setting(teacher_best)}, FID {teacher_best['fid']:.3f}."]
    facts = {"task": "distill", "teacher": teacher, "student_timesteps": list(recipe.distill.student_timesteps),
             "method": method, "training_steps": steps, "batch_size": recipe.train.batch_size,
             "training_seconds": round(wall_seconds, 1) if wall_seconds else None, "hardware": hardware,
             "teacher_best_fid": round(float(teacher_best["fid"]), 4), "data": recipe.data.source}
    return build_card(f"distill student: {recipe.name}", body, rows=rows, data_source=recipe.data.source,
                      split=ec.reference_split, tags=["distillation", "few-step", tag], facts=facts,
                      base_model=hub_id(teacher))


def latent_student_card(recipe, pipeline_class: str, timing: dict, grid: str, wall_seconds: Optional[float],
                        steps: Optional[int], hardware: str, method: str):
    """The card of a latent student (a pipeline of its teacher's class): base_model = the teacher where that is a
    Hub id, text-to-image; `timing`: seconds per grid column of the report, `grid`: its picture (relative)."""
    sc, teacher, k = recipe.sd, recipe.distill.teacher, len(recipe.distill.student_timesteps)
    wall = f", wall time {wall_seconds / 60:.1f} min" if wall_seconds else ""
    dtype = "" if sc.export_dtype == "float32" else f", torch_dtype=torch.{sc.export_dtype}"
    how = f"LoRA rank {sc.lora_rank}, fused" if sc.lora_rank else "full fine-tuning"
    body = [f"A {k}-timestep text-to-image student (diffusers `{pipeline_class}`, {how}) distilled with distill "
            f"from `{teacher}` ({method}, {sc.input} input), sampled in 1 to 4 steps without guidance.",
            "", f"- recipe: `recipe.yaml` of the run (task sd-distill; data `{recipe.data.source}`)",
            f"- training: {steps} steps of batch {recipe.train.batch_size}{wall} ({hardware})",
            f"- load: `diffusers.{pipeline_class}.from_pretrained(path{dtype})`, then "
            "`pipe(prompt, num_inference_steps=1, guidance_scale=0.0)`",
            *([f"- the adapter alone: `lora/`, `pipe.load_lora_weights(path + \"/lora\")` on the teacher"]
              if sc.lora_rank else []), "", f"![student vs teacher]({grid})", "",
            "| grid column | seconds (CPU, includes prompt encoding) |", "|---|---|",
            *[f"| {c} | {s:.2f} |" for c, s in timing.items()]]
    facts = {"task": "sd-distill", "teacher": teacher, "method": method, "pipeline": pipeline_class,
             "student_timesteps": list(recipe.distill.student_timesteps), "lora_rank": sc.lora_rank,
             "training_steps": steps, "batch_size": recipe.train.batch_size, "export_dtype": sc.export_dtype,
             "training_seconds": round(wall_seconds, 1) if wall_seconds else None, "hardware": hardware,
             "data": recipe.data.source}
    return build_card(f"distill student: {recipe.name}", body, rows=[], data_source=recipe.data.source, split="",
                      tags=["distillation", "few-step", "text-to-image", pipeline_class], facts=facts,
                      base_model=hub_id(teacher), pipeline_tag="text-to-image", results=[])


def classifier_card(info: dict):
    """The card of an evaluation classifier (`distill classifier train`; `info`: the .json written beside it): the
    test accuracy as its model-index, its training facts under `distill`, then the facts as a table."""
    from huggingface_hub import EvalResult

    name, acc = hub_id(info["data"]) or Path(info["data"]).name, info["test_accuracy"]
    results = [EvalResult(task_type="image-classification", dataset_type=name, dataset_name=name,
                          dataset_split=info["eval_split"], metric_type="accuracy", metric_value=round(float(acc), 4),
                          metric_name=f"accuracy, {info['eval_split']} split")] if acc is not None else []
    table = {"data": info["data"], "train split": f"{info['split']} ({info['train_size']} images)",
             "test accuracy": (f"{acc:.4f} on '{info['eval_split']}' ({info['test_size']} images)" if acc is not None
                               else f"none ({info['eval_note']})"),
             "classes": f"{info['num_classes']}: {', '.join(map(str, info['classes']))}",
             "channels": info["channels"], "resolution": info["resolution"], "steps": info["steps"],
             "batch size": info["batch_size"], "learning rate": info["learning_rate"], "seed": info["seed"],
             "train accuracy": f"{info['train_accuracy']:.4f}", "wall seconds": info["wall_seconds"]}
    body = ["Trained by `distill classifier train` for evaluation only (FID/KID features, class accuracy); use it "
            f"with `eval.features: classifier:{info['file']}`.", "", "| key | value |", "|---|---|",
            *[f"| {k} | {v} |" for k, v in table.items()]]
    facts = {"task": "classifier", "training_seconds": info["wall_seconds"], "data": info["data"],
             **{k: info[k] for k in ("split", "eval_split", "test_accuracy", "train_accuracy", "num_classes", "classes",
                                     "channels", "resolution", "steps", "batch_size", "learning_rate", "seed")}}
    return build_card(f"Evaluation classifier: {info['data']}", body, rows=[], data_source=info["data"], split="",
                      tags=["image-classification", "evaluation"], facts=facts, library="pytorch",
                      pipeline_tag="image-classification", results=results)


def gan_card(recipe, generator, rows: list[dict], wall_seconds: Optional[float], steps: Optional[int], hardware: str):
    """The card of a trained GAN generator (exported at its run folder): its size, training facts and the FID at each
    truncation psi scored (`rows`: eval-gan.json)."""
    cfg = generator.config
    n_params = sum(p.numel() for p in generator.parameters())
    cond = f"class-conditional ({cfg.num_classes} classes)" if cfg.num_classes else "unconditional"
    wall = f", wall time {wall_seconds / 60:.1f} min" if wall_seconds else ""
    kind, cls = recipe.generator.kind, type(generator).__name__
    body = [f"A {cond} {kind} generator (`{cls}`, {n_params / 1e6:.2f} M parameters, {cfg.resolution}x"
            f"{cfg.resolution}) trained against a {recipe.discriminator.kind} discriminator with the loss "
            f"`{recipe.gan.loss}`, EMA weights, trained with distill.", "",
            f"- recipe: `recipe.yaml` of the run (task gan; data `{recipe.data.source}`)",
            f"- training: {steps} steps of batch {recipe.train.batch_size}{wall} ({hardware})",
            f"- load: `distill.gan.architectures.load_generator(path)` (or `{cls}.from_pretrained(path)`); "
            "`distill sample path` draws a grid", ""]
    if rows:
        best = min(rows, key=lambda r: r["fid"])
        body += [f"## FID ({rows[0]['num_samples']} samples, features `{rows[0]['features']}`, reference split "
                 f"`{rows[0]['reference_split']}`)", "",
                 *fid_table(rows, ("truncation", "fid", "kid", "class_acc", "class_coverage", "intra_class_dist")),
                 "", f"Best: {_setting(best)}, FID {best['fid']:.3f}."]
    facts = {"task": "gan", "training_steps": steps, "batch_size": recipe.train.batch_size,
             "training_seconds": round(wall_seconds, 1) if wall_seconds else None, "hardware": hardware,
             "parameters": n_params, "data": recipe.data.source, "generator": kind,
             "discriminator": recipe.discriminator.kind}
    split = rows[0]["reference_split"] if rows else recipe.eval.reference_split
    return build_card(f"distill GAN: {recipe.name}", body, rows=rows or [], data_source=recipe.data.source,
                      split=split, tags=["gan", kind, "class-conditional" if cfg.num_classes else "unconditional"],
                      facts=facts)


DIRECTIONS = {"AtoB": "A to B", "BtoA": "B to A"}
SPADE_NETS = ("SPADE", "multi-scale PatchGAN")  # its networks have no netG / netD names


def _translator_class(method: str, cfg) -> str:
    """The class of the exported generator: SPADEGenerator, or UnetGenerator / ResnetGenerator by translate.netG."""
    return "SPADEGenerator" if method == "spade" else ("UnetGenerator" if cfg.netG.startswith("unet") else "ResnetGenerator")


def translator_card(recipe, method: str, result: Optional[dict], parameters: int, wall_seconds: Optional[float],
                    steps: Optional[int], hardware: str):
    """The card of a trained pix2pix / CycleGAN translator (the run folder `distill translate` loads): its
    networks, training facts and every number of its `eval.json` (`result`; None: not evaluated)."""
    from huggingface_hub import EvalResult

    data, cfg = recipe.data, recipe.translate
    name = hub_id(data.source) or Path(data.source).name
    groups = {}
    if result:  # pix2pix: the paired metrics in the direction trained; CycleGAN: each direction's
        groups = ({DIRECTIONS[result["direction"]]: result["metrics"]} if "metrics" in result else
                  {DIRECTIONS[d]: result[d] for d in DIRECTIONS if d in result})
    results = [EvalResult(task_type="image-to-image", dataset_type=name, dataset_name=name,
                          dataset_split=result["split"], metric_type=k, metric_value=round(float(v), 4),
                          metric_name=f"{k}, {direction}")
               for direction, metrics in groups.items() for k, v in metrics.items()
               if isinstance(v, float) and k != "n"]
    wall = f", wall time {wall_seconds / 60:.1f} min" if wall_seconds else ""
    net_g, net_d = SPADE_NETS if method == "spade" else (cfg.netG, cfg.netD)
    reverse = " (B -> A: `path/G_B`)" if method == "cyclegan" else ""
    body = [f"A {method} image-to-image translator (generator `{net_g}`, discriminator `{net_d}`, "
            f"{parameters / 1e6:.2f} M generator parameters, {data.crop_size}x{data.crop_size}, "
            f"{DIRECTIONS[data.direction]}), trained with distill.", "",
            f"- recipe: `recipe.yaml` (task {method}; data `{data.source}`)",
            f"- training: {steps} steps of batch {recipe.train.batch_size}{wall} ({hardware})",
            f"- load: `{_translator_class(method, cfg)}.from_pretrained(path)`{reverse}; "
            "`distill translate path INPUT OUTPUT`; `distill.translate.infer.load_generator(path)` in Python", ""]
    if results:
        body += [f"## Evaluation (split `{result['split']}`)", "", "| direction | metric | value |", "|---|---|---|",
                 *[f"| {r.metric_name.split(', ')[1]} | {r.metric_type} | {r.metric_value:.4g} |" for r in results]]
    facts = {"task": method, "training_steps": steps, "batch_size": recipe.train.batch_size,
             "training_seconds": round(wall_seconds, 1) if wall_seconds else None, "hardware": hardware,
             "parameters": parameters, "data": data.source}
    return build_card(f"distill {method}: {recipe.name}", body, rows=[], data_source=data.source, split="",
                      tags=["image-to-image", method], facts=facts, library="pytorch", pipeline_tag="image-to-image",
                      results=results)


def run_facts(run_dir) -> tuple[Optional[float], Optional[int], Optional[float]]:
    """(training wall seconds, last step, last loss) from `run_dir`/metrics.jsonl; Nones where it has none."""
    from .engine.run_dir import read_metrics, wall_seconds

    f = Path(run_dir) / "metrics.jsonl"
    rows = read_metrics(f) if f.is_file() else []
    losses = [r for r in rows if "loss" in r]
    return (wall_seconds(rows) if rows else None, rows[-1]["step"] if rows else None,
            float(losses[-1]["loss"]) if losses else None)


def hardware() -> str:
    """Where this process trains, for a card: the CUDA device, else the CPU model and its core count."""
    import os

    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    from .engine.hardware import cpu_model

    return f"{cpu_model()}, {os.cpu_count()} CPU cores"


def training_seconds(folder) -> Optional[float]:
    """The training wall time (seconds) in the metadata of `folder`/README.md, or None (no card, none said)."""
    card = Path(folder) / "README.md"
    if not card.is_file():
        return None
    from huggingface_hub import ModelCard

    try:
        meta = ModelCard.load(card).data.to_dict()
    except Exception:  # a card without metadata, or metadata the Hub's parser refuses: no number from it
        return None
    value = (meta.get("distill") or {}).get("training_seconds")
    return float(value) if isinstance(value, (int, float)) else None
