"""Latent flow-matching transformer teachers (Stable Diffusion 3, Flux) on tiny pipelines built from
configs: the conditioning adapters against the pipelines' own denoising calls, Flux's guidance fold,
the LADD token-feature discriminator, LoRA distillation with synthetic teacher latents, export as the
teacher's pipeline class reloaded by plain diffusers in a fresh process, exact resume, and the
recipes."""

import json
import os
import subprocess
import sys

import pytest
import torch
from diffusers import FluxPipeline, StableDiffusion3Pipeline
from safetensors.torch import load_file

from distill.cli import main as cli_main
from distill.config import load_recipe, recipe_from_dict
from distill.diffusion.denoiser import Denoiser
from distill.discriminator import Discriminator
from distill.engine.run_dir import read_metrics
from distill.errors import RecipeError
from distill.sd.families import family_of, network
from distill.sd.features import TokenFeatures
from distill.sd.mmdit import FluxConditioning, fold_guidance, pack, unpack
from distill.sd.space import train_sd_distill
from distill.sd.tiny_transformer import build_tiny_flux, build_tiny_sd3

R = 16  # pixels; latents (16, 8, 8), 4 x 4 tokens
PIPES = {"sd3": (build_tiny_sd3, StableDiffusion3Pipeline), "flux": (build_tiny_flux, FluxPipeline)}
# the timesteps each exported pipeline visits in 4 steps, t = 1000 sigma: SD3's FlowMatchEuler grid at shift 3,
# FluxPipeline's sigmas 1, 3/4, 1/2, 1/4 shifted by exp(mu) at 16 tokens (dev) or not at all (schnell)
TS = {"sd3": [1000, 858, 602, 9], "flux": [1000, 826, 613, 345], "flux-schnell": [1000, 750, 500, 250]}


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    root = tmp_path_factory.mktemp("teachers")
    return {k: str(build(root / k, R)) for k, (build, _) in PIPES.items()}


def _load(teachers, kind):
    pipe = PIPES[kind][1].from_pretrained(teachers[kind])
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(torch.float32)


def flow_recipe_dict(tmp_path, teacher, kind, sd=None, distill=None, discriminator=None, **train) -> dict:
    return {
        "task": "sd-distill", "name": "t", "output_dir": str(tmp_path / "run"),
        "data": {"source": "digits", "resolution": R, "limit": 16},
        "distill": {"teacher": teacher, "teacher_guidance": 3.0, "lambda_distill": 1.0, "student_timesteps": TS[kind],
                    **(distill or {})},
        "discriminator": {"head_channels": 8, "augment": "", "t_min": 500, "t_max": 999, **(discriminator or {})},
        "sd": {"lora_rank": 4, "input": "synthetic", "synthetic_count": 4, "synthetic_steps": 2, "disc_noise_cond": True,
               "teacher_sample_steps": 2, "sample_prompts": ["a cat"], **(sd or {})},
        "train": {"max_steps": 2, "batch_size": 4, "learning_rate": 1e-3, "lr_scheduler": "constant",
                  "lr_warmup_steps": 0, "log_every": 1, "checkpoint_every": 2, "ema_decay": 0.0, **train},
        "eval": {"num_samples": 0},
    }


def flow_recipe(tmp_path, teacher, kind, **over):
    return recipe_from_dict(flow_recipe_dict(tmp_path, teacher, kind, **over))


@pytest.mark.parametrize("kind,guidance", [("sd3", 3.0), ("flux", 3.5)])
def test_conditioning_matches_the_pipeline(teachers, kind, guidance):
    """The Denoiser's raw output through the family's conditioning adapter (Flux: packing, sigma = t / T, the
    guidance embedding; SD3: CFG against the empty prompt) equals the guided velocity the pipeline hands its
    scheduler at every step."""
    pipe = _load(teachers, kind)
    seen, step = [], pipe.scheduler.step
    pipe.scheduler.step = lambda out, t, x, *a, **k: (seen.append((out, t, x)), step(out, t, x, *a, **k))[1]
    prompts = ["a cat", "a red dog"]
    pipe(prompts, num_inference_steps=3, guidance_scale=guidance, height=R, width=R,
         generator=torch.Generator().manual_seed(0), output_type="latent")
    fam = family_of(pipe)
    den = Denoiser.from_scheduler(network(pipe), fam.noise_scheduler(pipe),
                                  fam.conditioning(fam.uncond(pipe, R, None), pipe, guidance))
    assert den.param.name == "flow"
    cond = fam.encode(pipe, prompts, R, None)
    assert len(seen) == 3
    with torch.no_grad():
        for v, t, x in seen:
            if kind == "flux":  # the pipeline's packed tokens -> (B, C, H, W)
                assert x.shape == (2, 16, 64) and torch.equal(pack(unpack(x, 8, 8)), x)
                x, v = unpack(x, 8, 8), unpack(v, 8, 8)
            assert (den.out(x, t, cond, guidance) - v).abs().max() < 1e-5, float(t)


def test_flux_guidance_fold_is_exact(teachers):
    """A guidance-distilled transformer at guidance g equals the folded one with no guidance input."""
    pipe = _load(teachers, "flux")
    fam, net = family_of(pipe), pipe.transformer
    cond = fam.encode(pipe, ["a cat", "a dog"], R, None)
    x, t = torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(1)), torch.tensor([900, 300])
    folded = fold_guidance(net, 3.5)
    assert not folded.config.guidance_embeds and net.config.guidance_embeds
    assert sum(p.numel() for p in folded.parameters()) < sum(p.numel() for p in net.parameters())
    with torch.no_grad():
        a = fam.conditioning(None, pipe, 3.5).call(net, x, t, cond)
        b = FluxConditioning(None, None, 1000).call(folded, x, t, cond)  # no guidance input
        c = fam.conditioning(None, pipe, 1.0).call(net, x, t, cond)
    assert (a - b).abs().max() < 1e-5 and (a - c).abs().max() > 1e-3  # the fold keeps g, and g matters


@pytest.mark.parametrize("kind,blocks,n_blocks,width", [("sd3", [], 2, 16), ("sd3", [0], 2, 16),
                                                        ("flux", [], 2, 32), ("flux", [0], 2, 32)])
def test_token_feature_discriminator_shapes(teachers, kind, blocks, n_blocks, width):
    """LADD's backbone: image tokens of the chosen blocks as (B, D, h, w) maps at a sampled noise level, the
    pass stopping after the last chosen block, gradients reaching the latent; heads give one logit per token."""
    from distill.sd.features import transformer_blocks

    pipe = _load(teachers, kind)
    fam = family_of(pipe)
    den = Denoiser.from_scheduler(network(pipe), fam.noise_scheduler(pipe),
                                  fam.conditioning(fam.uncond(pipe, R, None), pipe, 3.0))
    feats_net = fam.features(den, blocks)
    assert isinstance(feats_net, TokenFeatures) and feats_net.channels == [width] * (len(blocks) or n_blocks)
    ran = []
    hooks = [b.register_forward_hook(lambda *a, i=i: ran.append(i))
             for i, b in enumerate(transformer_blocks(den.net))]
    z = torch.randn(3, 16, 8, 8, requires_grad=True)
    cond = fam.encode(pipe, ["a", "b", "c"], R, None)
    t = torch.tensor([100, 500, 900])
    feats = feats_net(z, cond, t, torch.randn(3, 16, 8, 8))
    for h in hooks:
        h.remove()
    assert ran == (blocks or list(range(n_blocks)))  # blocks after the last chosen one never run
    assert [f.shape for f in feats] == [(3, width, 4, 4)] * len(ran)
    sum(f.square().sum() for f in feats).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    disc = Discriminator(feats_net, None, 8, True, "", cond_dim=cond.pooled.shape[1])
    logits, _ = disc(z.detach(), cond, t, torch.randn(3, 16, 8, 8), c=cond.pooled)
    assert logits.shape == (3, 16 * len(ran))  # one logit per token per block
    with pytest.raises(RecipeError, match="backbone_layers"):
        fam.features(den, [n_blocks])


@pytest.fixture(scope="module")
def runs(teachers, tmp_path_factory):
    """Two LoRA steps on each tiny teacher: synthetic teacher latents (LADD), the token-feature
    discriminator with noise-conditioned heads, the regression term at the teacher's guidance."""
    return {k: train_sd_distill(flow_recipe(tmp_path_factory.mktemp(k), teachers[k], k)) for k in PIPES}


RELOAD = """
import json, sys, torch, diffusers
out = {}
for folder in sys.argv[1:]:
    name = json.load(open(folder + "/model_index.json"))["_class_name"]
    pipe = getattr(diffusers, name).from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    for n in range(1, 5):
        x = pipe(["a photo of the digit 3", "a cat"], num_inference_steps=n, guidance_scale=0.0, height=16, width=16,
                 generator=torch.Generator().manual_seed(0), output_type="pt").images
        out[f"{name}-{n}"] = [list(x.shape), bool(torch.isfinite(x).all()), float(x.std()),
                              pipe.scheduler.timesteps.tolist()]
print(json.dumps(out))
"""


def test_distil_export_and_reload_in_plain_diffusers(runs):
    for kind, run in runs.items():
        rows = [r for r in read_metrics(run / "metrics.jsonl") if "loss_d" in r]
        assert len(rows) == 2 and all(r["loss_distill"] >= 0 for r in rows), kind
        ckpt = load_file(run / "checkpoints/checkpoint-2/student.safetensors")
        assert ckpt and all("lora" in k for k in ckpt), kind
        assert len(list((run / "cache").glob("synthetic-*.safetensors"))) == 1
        assert (run / "lora/pytorch_lora_weights.safetensors").is_file()
        sched = json.loads((run / "scheduler/scheduler_config.json").read_text())
        assert sched["_class_name"] == "FlowMatchEulerDiscreteScheduler" and sched["stochastic_sampling"]
    cfg = json.loads((runs["flux"] / "transformer/config.json").read_text())
    assert cfg["guidance_embeds"] is False  # the student's guidance embedding is folded in
    res = subprocess.run([sys.executable, "-c", RELOAD, str(runs["sd3"]), str(runs["flux"])],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(out) == 8
    for key, (shape, finite, std, visited) in out.items():
        assert shape == [2, 3, R, R] and finite and std > 0, key
    for name, kind in [("StableDiffusion3Pipeline", "sd3"), ("FluxPipeline", "flux")]:
        # the plain pipeline samples where the student was trained: all 4 timesteps at 4 steps, a subset at 1 and 2
        assert max(abs(a - b) for a, b in zip(out[f"{name}-4"][3], TS[kind])) < 0.5, out[f"{name}-4"][3]
        assert [round(v) for v in out[f"{name}-1"][3]] == [1000]
        assert set(round(v) for v in out[f"{name}-2"][3]) <= set(TS[kind])


@pytest.mark.parametrize("kind", ["sd3", "flux"])
def test_student_timesteps_must_be_the_pipelines(teachers, tmp_path, kind):
    with pytest.raises(RecipeError, match=r"distill.student_timesteps .* t = \[" + ", ".join(map(str, TS[kind]))):
        train_sd_distill(flow_recipe(tmp_path, teachers[kind], kind, distill={"student_timesteps": [999, 749, 499, 249]}))


@pytest.mark.parametrize("kind", ["sd3", "flux"])
def test_lora_export_on_the_teacher_equals_the_student(teachers, runs, kind):
    """The LoRA file loads on the teacher with plain diffusers; fused, at the training guidance, it computes
    what the exported student computes (Flux: the student has the guidance folded in)."""
    teacher, student = _load(teachers, kind), _load({kind: str(runs[kind])}, kind)
    teacher.load_lora_weights(str(runs[kind] / "lora"))
    teacher.fuse_lora()
    teacher.unload_lora_weights()
    fam = family_of(teacher)
    cond = fam.encode(teacher, ["a cat", "a dog"], R, None)
    x, t = torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(2)), torch.tensor([999, 400])
    with torch.no_grad():
        a = fam.conditioning(None, teacher, 3.0).call(network(teacher), x, t, cond)
        b = fam.conditioning(None, student, 3.0).call(network(student), x, t, cond)
        base = fam.conditioning(None, teacher, 3.0).call(network(_load(teachers, kind)), x, t, cond)
    assert (a - b).abs().max() < 1e-4 and (a - base).abs().max() > 1e-4  # the adapters moved the student


def test_resume_matches_uninterrupted_run(teachers, runs, tmp_path):
    part = train_sd_distill(flow_recipe(tmp_path, teachers["sd3"], "sd3", interrupt_at=1))
    assert (part / "checkpoints/checkpoint-1").is_dir() and not (part / "model_index.json").exists()
    train_sd_distill(flow_recipe(tmp_path, teachers["sd3"], "sd3", resume_from_checkpoint="latest"))
    for name in ["student.safetensors", "heads.safetensors"]:
        a = load_file(runs["sd3"] / "checkpoints/checkpoint-2" / name)
        b = load_file(part / "checkpoints/checkpoint-2" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_full_finetune_real_latents_and_img2img(teachers, tmp_path):
    """Full fine-tuning on real (VAE-encoded, shifted and scaled) latents, the regression term through the VAE
    decoder, backward simulation over the float flow timesteps, the Flux-schnell-like teacher (no guidance
    input); the student's one-step image-to-image."""
    from distill.sd.img2img import img2img_one_step
    from distill.sd.tiny_transformer import TINY_PIPELINES

    schnell = str(TINY_PIPELINES["flux-schnell"](tmp_path / "schnell", R))
    run = train_sd_distill(flow_recipe(tmp_path, schnell, "flux-schnell",
                                       sd={"lora_rank": 0, "input": "real", "loss_space": "pixel"},
                                       distill={"backward_simulation": True},
                                       discriminator={"backbone_layers": [1]}, max_steps=1, checkpoint_every=1))
    student = FluxPipeline.from_pretrained(str(run))
    assert not (run / "lora").exists() and not student.transformer.config.guidance_embeds
    calls = []
    student.transformer.register_forward_hook(lambda *a: calls.append(1))
    out = img2img_one_step(student, torch.rand(2, 3, R, R) * 2 - 1, ["a cat"] * 2, 0.5, torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, R, R) and torch.isfinite(out).all() and len(calls) == 1


def test_tiny_sd3_recipe_through_the_cli(tmp_path):
    rc = cli_main(["run", "recipes/tiny-sd3.yaml", f"output_dir={tmp_path}/run", f"distill.teacher={tmp_path}/teacher",
                   "train.max_steps=2", "train.checkpoint_every=2", "sd.synthetic_count=8"])
    assert rc == 0
    for f in ["model_index.json", "lora/pytorch_lora_weights.safetensors", "report.md",
              "samples/student-vs-teacher.png"]:
        assert (tmp_path / "run" / f).exists(), f
    assert "StableDiffusion3Pipeline" in (tmp_path / "run/report.md").read_text()


@pytest.mark.parametrize("recipe", ["recipes/tiny-sd3.yaml", "recipes/tiny-flux.yaml", "recipes/sd3-turbo.yaml",
                                    "recipes/flux-schnell.yaml"])
def test_flow_recipes_parse(recipe):
    r = load_recipe(recipe)
    assert r.task == "sd-distill" and r.distill.teacher and r.sd.input == "synthetic"
    assert r.discriminator.backbone == "teacher" and r.sd.disc_noise_cond


def test_two_processes_equal_one(teachers, tmp_path):
    """The latent flow path on 2 CPU processes (gloo, torchrun) takes the step 1 process takes on the same
    global batch: SD3 teacher, LoRA student, synthetic latents made once by the main process, token-feature
    discriminator with noise-conditioned heads."""
    from .test_multiprocess import one_equals_two

    d = flow_recipe_dict(tmp_path, teachers["sd3"], "sd3", discriminator={"r1_gamma": 1e-3})
    del d["output_dir"]  # one/ and two/
    one_equals_two(tmp_path, d, ["student.safetensors", "heads.safetensors"])
    assert (tmp_path / "two" / "transformer" / "config.json").is_file()


@pytest.mark.slow  # ~45 s each on 2 CPU cores
@pytest.mark.parametrize("kind,wrap", [("sd3", "JointTransformerBlock"),
                                       ("flux", "FluxTransformerBlock,FluxSingleTransformerBlock")])
def test_fsdp2_two_cpu_processes(teachers, tmp_path, kind, wrap):
    """LoRA on the SD3 / Flux transformer under FSDP2 (full shard, the blocks of recipes/accelerate/fsdp-<kind>.yaml
    wrapped) on 2 CPU processes: the gathered checkpoint and the exported transformer (Flux: guidance folded)
    match 1 process. r1_gamma 0, as for the UNet (docs/memory.md)."""
    from pathlib import Path

    import yaml

    d = flow_recipe_dict(tmp_path, teachers[kind], kind, discriminator={"r1_gamma": 0.0})
    del d["output_dir"]
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(d))
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true", "FSDP_WRAP": wrap,
           "PYTHONPATH": str(root)}  # tests/fsdp_cpu.py imports this checkout's distill
    runs = [[sys.executable, "-m", "distill.cli"],
            [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
             "--master_port", str(29600 + os.getpid() % 300), str(root / "tests/fsdp_cpu.py")]]
    for cmd, out in zip(runs, ["one", "fsdp"]):
        res = subprocess.run(cmd + ["run", str(path), f"output_dir={tmp_path / out}"], capture_output=True, text=True,
                             env=env, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
    for name in ["checkpoints/checkpoint-2/student.safetensors", "checkpoints/checkpoint-2/heads.safetensors",
                 "transformer/diffusion_pytorch_model.safetensors"]:
        a, b = load_file(tmp_path / "one" / name), load_file(tmp_path / "fsdp" / name)
        assert a.keys() == b.keys()
        worst = max(float((a[k] - b[k]).abs().max()) for k in a)
        assert worst < 2e-4, (name, worst)


@pytest.mark.parametrize("kind", ["sd3", "flux"])
def test_bf16_mixed_precision_with_r1(teachers, tmp_path, kind):
    """bf16 autocast (CPU): frozen text encoders / VAE / base transformer in bf16, adapters in fp32, R1 through the
    token features; the export is one dtype and samples with plain diffusers."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)  # accelerate keeps one process-wide state (mixed precision)
    try:
        run = train_sd_distill(flow_recipe(tmp_path, teachers[kind], kind, discriminator={"r1_gamma": 1e-3},
                                           mixed_precision="bf16"))
    finally:
        AcceleratorState._reset_state(True)
    rows = [r for r in read_metrics(run / "metrics.jsonl") if "loss_d" in r]
    assert len(rows) == 2 and all(r["r1"] > 0 and r["loss_d"] == r["loss_d"] for r in rows)
    pipe = _load({kind: str(run)}, kind)
    assert {p.dtype for p in network(pipe).parameters()} == {torch.float32}
    x = pipe("a cat", num_inference_steps=2, guidance_scale=0.0, height=R, width=R, output_type="pt").images
    assert torch.isfinite(x).all()
