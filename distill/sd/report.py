"""After an SD distillation: reload the exported student (the pipeline at the run folder) with plain diffusers,
draw a sample grid (rows: prompts; columns: student 1 step, student 4 steps, teacher N steps with its guidance,
then one-step image-to-image of a training image at strength 0.5 when real images were used), write report.md
and the student's Hub card (README.md, distill.cards.latent_student_card)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..engine.run_dir import read_metrics
from ..viz import save_grid, upscale_for_view


def _sample(pipe, prompts, steps, guidance, R, seed):
    g = torch.Generator().manual_seed(seed)
    return pipe(prompts, num_inference_steps=steps, guidance_scale=guidance, height=R, width=R, generator=g,
                output_type="pt").images * 2 - 1


@torch.no_grad()
def write_sd_report(recipe, run_dir: Path) -> Path:
    import diffusers

    from .data import read_prompts
    from .families import network
    from .img2img import img2img_one_step
    from .teacher import load_sd_teacher

    sc, R, run_dir = recipe.sd, recipe.data.resolution, Path(run_dir)
    name = json.loads((run_dir / "model_index.json").read_text())["_class_name"]
    student = getattr(diffusers, name).from_pretrained(str(run_dir), torch_dtype=getattr(torch, sc.export_dtype))
    student.to(torch.float32)  # CPU sampling for the grid
    student.set_progress_bar_config(disable=True)
    teacher = load_sd_teacher(recipe.distill.teacher, sc.revision, sc.variant)
    prompts = list(sc.sample_prompts)
    if not prompts:
        prompts = read_prompts(sc.prompts)[:4] if sc.prompts else [sc.caption_template.format(label=i) for i in range(4)]
    cols, timing = [], {}
    embedded = getattr(network(teacher).config, "guidance_embeds", False)  # FLUX.1-dev: guidance is an input
    how = "guidance embedding" if embedded else "CFG"
    for label, pipe, steps, w in [("student, 1 step", student, 1, 0.0), ("student, 4 steps", student, 4, 0.0),
                                  (f"teacher, {sc.teacher_sample_steps} steps, {how} {recipe.distill.teacher_guidance}",
                                   teacher, sc.teacher_sample_steps, recipe.distill.teacher_guidance)]:
        t0 = time.perf_counter()
        cols.append(_sample(pipe, prompts, steps, w, R, recipe.eval.seed))
        timing[label] = time.perf_counter() - t0
    init = cols[2]  # the teacher's images as img2img inputs
    cols.append(img2img_one_step(student, init, prompts, 0.5, torch.Generator().manual_seed(recipe.eval.seed)))
    grid = torch.stack(cols, 1).flatten(0, 1)  # (prompts x columns)
    grid_path = save_grid(grid, run_dir / "samples" / "student-vs-teacher.png", nrow=len(cols),
                          scale=upscale_for_view(R))
    rows = [r for r in read_metrics(run_dir / "metrics.jsonl") if "loss_g" in r]
    last = rows[-1] if rows else {}
    lines = [f"# {recipe.name}: Stable Diffusion one-step student", "",
             f"- teacher: `{recipe.distill.teacher}` ({name}), guidance {recipe.distill.teacher_guidance}",
             f"- student: {'LoRA rank ' + str(sc.lora_rank) if sc.lora_rank else 'full fine-tuning'}, "
             f"timesteps {recipe.distill.student_timesteps}, loss space {sc.loss_space}, backbone {recipe.discriminator.backbone}, "
             f"input {sc.input}",
             f"- steps: {last.get('step', 0)}; last loss_g {last.get('loss_g', float('nan')):.4g}"
             + (f", loss_distill {last['loss_distill']:.4g}" if "loss_distill" in last else "") + ", "
             f"loss_d {last.get('loss_d', float('nan')):.4g}",
             f"- exported pipeline: this folder (load with `diffusers.{name}.from_pretrained`, "
             f"`pipe(prompt, num_inference_steps=1, guidance_scale=0.0)`; model card `README.md`)", "",
             f"![samples](samples/{grid_path.name})", "",
             "Columns: " + " | ".join(list(timing) + ["student img2img from the teacher column, strength 0.5, 1 step"]),
             "", "Rows: " + " | ".join(f"`{p}`" for p in prompts), "",
             "| sampler | seconds for the grid column (CPU, includes prompt encoding) |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in timing.items()]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    from ..cards import hardware, latent_student_card, run_facts
    from ..distillation.recipe import method_name

    wall, steps, _ = run_facts(run_dir)
    latent_student_card(recipe, name, timing, f"samples/{grid_path.name}", wall, steps, hardware(),
                        method_name(recipe)).save(
        run_dir / "README.md")
    return path
