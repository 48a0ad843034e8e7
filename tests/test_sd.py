"""Stable Diffusion teachers -> one-step latent students, on tiny pipelines built from configs:
save / from_pretrained, distillation with and without LoRA, export, reload in plain diffusers,
1-step text-to-image and image-to-image, resume, SDXL, synthetic data, bad input."""

import pytest
import torch
from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline
from safetensors.torch import load_file

from distill.cli import main as cli_main
from distill.config import load_recipe, recipe_from_dict
from distill.errors import DistillError, RecipeError
from distill.engine.run_dir import read_metrics
from distill.sd.img2img import diffusers_steps_for, img2img_one_step, img2img_pipeline
from distill.sd.lora import add_lora, count_trainable
from distill.sd.tiny import build_tiny_sd, build_tiny_sdxl
from distill.sd.space import train_sd_distill

R = 16


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    return str(build_tiny_sd(tmp_path_factory.mktemp("tiny-sd") / "teacher", R))


def sd_recipe(tmp_path, teacher, sd=None, distill=None, data=None, discriminator=None, consistency=None, **train):
    return recipe_from_dict({
        "task": "sd-distill", "name": "t", "output_dir": str(tmp_path / "run"),
        "data": {"source": "digits", "resolution": R, "limit": 16, **(data or {})},
        "distill": {"teacher": teacher, "teacher_guidance": 2.0, **(distill or {})},
        "discriminator": {"head_channels": 8, "augment": "", **(discriminator or {})},
        "sd": {"teacher_sample_steps": 2, **(sd or {})}, "consistency": consistency or {},
        "train": {"max_steps": 2, "batch_size": 4, "learning_rate": 1e-3, "lr_scheduler": "constant",
                  "lr_warmup_steps": 0, "log_every": 1, "checkpoint_every": 2, "ema_decay": 0.0, **train},
        "eval": {"num_samples": 0},
    })


@pytest.fixture(scope="module")
def runs(tiny_sd, tmp_path_factory):
    """Two distillation steps with full fine-tuning and with LoRA (rank 4)."""
    full = train_sd_distill(sd_recipe(tmp_path_factory.mktemp("full"), tiny_sd, ema_decay=0.9))
    lora = train_sd_distill(sd_recipe(tmp_path_factory.mktemp("lora"), tiny_sd,
                                      sd={"lora_rank": 4, "lora_alpha": 8, "gradient_checkpointing": True, "loss_space": "pixel"}))
    return {"full": full, "lora": lora}


def _state_bytes(path):
    st = torch.load(path, weights_only=True)["state"]
    return sum(v.numel() * v.element_size() for s in st.values() for v in s.values() if torch.is_tensor(v) and v.ndim)


def _sample(pipe, n=2, steps=1):
    return pipe(["a photo of the digit 1"] * n, num_inference_steps=steps, guidance_scale=0.0, height=R, width=R,
                generator=torch.Generator().manual_seed(0), output_type="pt").images


def test_tiny_pipeline_save_and_reload(tiny_sd):
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd)
    assert pipe.tokenizer.model_max_length == 32 and len(pipe.tokenizer) == 514
    ids = pipe.tokenizer("a photo").input_ids
    assert ids[0] == pipe.tokenizer.bos_token_id and ids[-1] == pipe.tokenizer.eos_token_id and len(ids) == 8  # a</w> p h o t o</w>
    x = pipe("a photo", num_inference_steps=2, height=R, width=R, output_type="pt").images
    assert x.shape == (1, 3, R, R) and torch.isfinite(x).all()


def test_distill_files_metrics_and_export(runs):
    for name, run in runs.items():
        for f in ["recipe.yaml", "metrics.jsonl", "checkpoints/checkpoint-2/student.safetensors",
                  "checkpoints/checkpoint-2/heads.safetensors", "model_index.json", "unet/config.json"]:
            assert (run / f).exists(), (name, f)
        rows = [r for r in read_metrics(run / "metrics.jsonl") if "loss_d" in r]
        assert len(rows) == 2 and all(r["loss_distill"] >= 0 for r in rows), name
    assert (runs["lora"] / "lora/pytorch_lora_weights.safetensors").is_file()
    pipe = StableDiffusionPipeline.from_pretrained(str(runs["full"]))  # plain diffusers
    assert type(pipe.scheduler).__name__ == "LCMScheduler"
    pipe.scheduler.set_timesteps(1)
    assert pipe.scheduler.timesteps.tolist() == [999]
    pipe.scheduler.set_timesteps(4)
    assert pipe.scheduler.timesteps.tolist() == [999, 749, 499, 249]
    x = _sample(pipe)
    assert x.shape == (2, 3, R, R) and torch.isfinite(x).all()


def test_lora_trains_adapters_only_and_saves_optimizer_memory(runs, tiny_sd):
    lora_ckpt = load_file(runs["lora"] / "checkpoints/checkpoint-2/student.safetensors")
    assert lora_ckpt and all("lora" in k for k in lora_ckpt)  # adapter weights only
    ref = StableDiffusionPipeline.from_pretrained(tiny_sd).unet
    n_peft = add_lora(ref, 4, 4, ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj",
                                  "ff.net.2", "conv1", "conv2", "conv_shortcut", "time_emb_proj"])
    assert n_peft == sum(p.numel() for n, p in ref.named_parameters() if "lora_" in n) == count_trainable(ref)
    trained = read_metrics(runs["lora"] / "metrics.jsonl")[0]["trainable_params"]
    assert trained == n_peft == sum(v.numel() for v in lora_ckpt.values())
    full_trained = read_metrics(runs["full"] / "metrics.jsonl")[0]["trainable_params"]
    assert full_trained == sum(p.numel() for p in StableDiffusionPipeline.from_pretrained(tiny_sd).unet.parameters())
    # base weights unchanged: teacher + the exported LoRA, fused, equals the exported student UNet
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd)
    pipe.load_lora_weights(str(runs["lora"] / "lora"))
    pipe.fuse_lora()
    pipe.unload_lora_weights()
    exported = StableDiffusionPipeline.from_pretrained(str(runs["lora"])).unet.state_dict()
    fused = pipe.unet.state_dict()
    assert max(float((fused[k] - exported[k]).abs().max()) for k in exported) < 1e-5
    teacher = StableDiffusionPipeline.from_pretrained(tiny_sd).unet.state_dict()
    assert max(float((teacher[k] - exported[k]).abs().max()) for k in exported) > 0  # and the adapters moved
    # optimizer memory, measured: bytes of the Adam state tensors in the checkpoints
    b_full = _state_bytes(runs["full"] / "checkpoints/checkpoint-2/optimizer_g.pt")
    b_lora = _state_bytes(runs["lora"] / "checkpoints/checkpoint-2/optimizer_g.pt")
    assert b_full == 2 * 4 * full_trained and b_lora == 2 * 4 * trained and b_lora < b_full / 5


def test_one_step_img2img_avoids_empty_timesteps(runs):
    pipe = StableDiffusionPipeline.from_pretrained(str(runs["lora"]))
    pipe.set_progress_bar_config(disable=True)
    calls = []
    h = pipe.unet.register_forward_hook(lambda *a: calls.append(1))
    image = torch.rand(2, 3, R, R) * 2 - 1
    out = img2img_one_step(pipe, image, ["a photo of the digit 2"] * 2, 0.5, torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, R, R) and torch.isfinite(out).all() and len(calls) == 1
    i2i = img2img_pipeline(pipe)
    assert isinstance(i2i, StableDiffusionImg2ImgPipeline) and diffusers_steps_for(0.5) == 2
    calls.clear()
    x = i2i("a photo", image=(image[:1] + 1) / 2, strength=0.5, num_inference_steps=diffusers_steps_for(0.5),
            guidance_scale=0.0, output_type="pt").images
    assert x.shape == (1, 3, R, R) and torch.isfinite(x).all() and len(calls) == 1
    h.remove()
    with pytest.raises(DistillError, match="strength"):
        img2img_one_step(pipe, image, ["x"] * 2, 0.0)


def test_resume_matches_uninterrupted_run(tiny_sd, runs, tmp_path):
    over = dict(sd={"lora_rank": 4, "lora_alpha": 8, "gradient_checkpointing": True, "loss_space": "pixel"})
    part = train_sd_distill(sd_recipe(tmp_path, tiny_sd, interrupt_at=1, **over))
    assert (part / "checkpoints/checkpoint-1").is_dir() and not (part / "model_index.json").exists()
    train_sd_distill(sd_recipe(tmp_path, tiny_sd, resume_from_checkpoint="latest", **over))
    for name in ["student.safetensors", "heads.safetensors"]:
        a = load_file(runs["lora"] / "checkpoints/checkpoint-2" / name)
        b = load_file(part / "checkpoints/checkpoint-2" / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_sdxl_lora_synthetic_timm_latent(tmp_path):
    """SDXL path (two encoders, pooled embeds, add_time_ids), LADD synthetic teacher latents from
    a prompt file (cached), a timm backbone on decoded images, latent-space loss, LoRA export."""
    teacher = str(build_tiny_sdxl(tmp_path / "xl", R))
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red square\na blue circle\n")
    rec = sd_recipe(tmp_path, teacher, sd={"lora_rank": 2, "input": "synthetic", "prompts": str(prompts),
                                           "synthetic_count": 4, "synthetic_steps": 2, "sample_prompts": ["a cat"]},
                    discriminator={"backbone": "timm:test_vit", "backbone_pretrained": "none", "backbone_img_size": 32,
                                   "backbone_layers": [1, 3]}, batch_size=2)
    with pytest.warns(UserWarning, match="RANDOM features"):
        run = train_sd_distill(rec)
    assert len(list((run / "cache").glob("synthetic-*.safetensors"))) == 1
    pipe = StableDiffusionXLPipeline.from_pretrained(str(run))
    assert (run / "lora/pytorch_lora_weights.safetensors").is_file()
    x = pipe("a red square", num_inference_steps=1, guidance_scale=0.0, height=R, width=R, output_type="pt").images
    assert x.shape == (1, 3, R, R) and torch.isfinite(x).all()


def test_cli_runs_tiny_sd_recipe(tmp_path):
    rc = cli_main(["run", "recipes/tiny-sd.yaml", f"output_dir={tmp_path}/run", f"distill.teacher={tmp_path}/teacher",
                   "train.max_steps=2", "train.checkpoint_every=2", "data.limit=16"])
    assert rc == 0
    for f in ["model_index.json", "lora/pytorch_lora_weights.safetensors", "report.md",
              "samples/student-vs-teacher.png", "metrics.jsonl"]:
        assert (tmp_path / "run" / f).exists(), f
    assert "student-vs-teacher.png" in (tmp_path / "run/report.md").read_text()
    from huggingface_hub import ModelCard  # the export's Hub card, at the run folder beside model_index.json

    card = ModelCard.load(tmp_path / "run" / "README.md").data
    assert (card.pipeline_tag, card.base_model) == ("text-to-image", None)  # a local teacher: no base_model
    assert card.to_dict()["distill"]["training_steps"] == 2 and "StableDiffusionPipeline" in card.tags


def test_bad_inputs(tiny_sd, tmp_path, capsys):
    with pytest.raises(RecipeError, match=r"unknown key 'sd.lora_rnk'"):
        load_recipe("recipes/tiny-sd.yaml", ["sd.lora_rnk=4"])
    assert cli_main(["run", "recipes/tiny-sd.yaml", "sd.loss_space=pixels"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sd.loss_space" in err
    with pytest.raises(DistillError, match="prompt file not found"):
        train_sd_distill(sd_recipe(tmp_path / "a", tiny_sd, sd={"input": "synthetic", "prompts": str(tmp_path / "no.txt")}))
    with pytest.raises(DistillError, match="expected one of StableDiffusionPipeline"):
        train_sd_distill(sd_recipe(tmp_path / "b", "distill/assets/teachers/digits"))
    with pytest.raises(DistillError, match="teacher folder not found"):
        train_sd_distill(sd_recipe(tmp_path / "c", str(tmp_path / "nowhere")))
    with pytest.raises(DistillError, match="no caption column"):
        folder = tmp_path / "imgs"
        folder.mkdir()
        from PIL import Image

        Image.new("RGB", (R, R)).save(folder / "a.png")
        (folder / "metadata.jsonl").write_text('{"file_name": "a.png", "label": "x"}\n')
        train_sd_distill(sd_recipe(tmp_path / "d", tiny_sd, data={"source": str(folder)}))
    with pytest.raises(RecipeError, match="lora_target_modules"):
        train_sd_distill(sd_recipe(tmp_path / "e", tiny_sd, sd={"lora_rank": 2, "lora_target_modules": ["nope"]}))
    with pytest.raises(RecipeError, match="fake_score is implemented for pixel students only"):
        sd_recipe(tmp_path / "f", tiny_sd, distill={"lambda_dmd": 1.0}, discriminator={"backbone": "fake_score"})


def test_imagefolder_captions_and_prompt_files(tmp_path):
    from PIL import Image

    from distill.config import DataConfig
    from distill.sd.config import SDConfig
    from distill.sd.data import load_captioned_images, read_prompts

    for i in range(3):
        Image.new("RGB", (20, 20), (80 * i, 0, 0)).save(tmp_path / f"{i}.png")
    (tmp_path / "metadata.jsonl").write_text("".join(f'{{"file_name": "{i}.png", "text": "red {i}"}}\n' for i in range(3)))
    x, caps = load_captioned_images(DataConfig(source=str(tmp_path), resolution=R), SDConfig())
    assert x.shape == (3, 3, R, R) and x.dtype == torch.uint8 and caps == ["red 0", "red 1", "red 2"]
    x, caps = load_captioned_images(DataConfig(source="digits", resolution=R, limit=5), SDConfig())
    assert x.shape == (5, 3, R, R) and all(c.startswith("a photo of the digit ") for c in caps)
    (tmp_path / "p.txt").write_text("# comment\na cat\n\na dog\n")
    assert read_prompts(str(tmp_path / "p.txt")) == ["a cat", "a dog"]


@pytest.mark.parametrize("name,kind,procs", [("1gpu", "NO", 1), ("ddp-8gpu", "MULTI_GPU", 8), ("fsdp", "FSDP", 8),
                                             ("deepspeed-zero2", "DEEPSPEED", 8)])
def test_accelerate_configs_load(name, kind, procs):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(f"recipes/accelerate/{name}.yaml")
    assert cfg.distributed_type.name == kind and cfg.num_processes == procs and cfg.mixed_precision == "bf16"
    if kind == "FSDP":
        assert cfg.fsdp_config["fsdp_version"] == 2 and cfg.fsdp_config["fsdp_reshard_after_forward"] is True
    if kind == "DEEPSPEED":
        assert cfg.deepspeed_config["zero_stage"] == 2


@pytest.mark.parametrize("recipe", ["recipes/sd15-turbo.yaml", "recipes/sdxl-turbo.yaml", "recipes/tiny-sd.yaml"])
def test_sd_recipes_parse(recipe):
    r = load_recipe(recipe)
    assert r.task == "sd-distill" and r.distill.teacher and r.sd.input in ("real", "synthetic")


def test_bf16_mixed_precision_with_r1_and_export(tiny_sd, tmp_path):
    """bf16 autocast (CPU): frozen text encoders / VAE / base UNet in bf16, adapters in fp32, synthetic
    teacher samples, R1 through accelerate's fp32 output conversion; the export is one dtype and
    reloads in plain diffusers."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)  # accelerate keeps one process-wide state (mixed precision)
    try:
        run = train_sd_distill(sd_recipe(tmp_path, tiny_sd, discriminator={"r1_gamma": 1e-3}, mixed_precision="bf16",
                                         sd={"lora_rank": 4, "input": "synthetic", "synthetic_count": 4,
                                             "synthetic_steps": 2}))
    finally:
        AcceleratorState._reset_state(True)
    rows = [r for r in read_metrics(run / "metrics.jsonl") if "loss_d" in r]
    assert len(rows) == 2 and all(r["r1"] > 0 for r in rows)
    pipe = StableDiffusionPipeline.from_pretrained(str(run))
    assert {p.dtype for m in [pipe.unet, pipe.vae, pipe.text_encoder] for p in m.parameters()} == {torch.float32}
    assert torch.isfinite(_sample(pipe, 1)).all()


def test_tiny_autoencoder_decoder(tiny_sd, tmp_path):
    """sd.taesd: an AutoencoderTiny decodes for the pixel-space loss (full fine-tuning, 1 step)."""
    from distill.sd.teacher import load_sd_teacher, make_decoder
    from distill.sd.tiny import build_tiny_taesd

    taesd = str(build_tiny_taesd(tmp_path / "taesd"))
    dec = make_decoder(load_sd_teacher(tiny_sd), taesd)
    assert type(dec.vae).__name__ == "AutoencoderTiny" and dec(torch.randn(2, 4, R // 2, R // 2)).shape == (2, 3, R, R)
    run = train_sd_distill(sd_recipe(tmp_path, tiny_sd, sd={"taesd": taesd, "loss_space": "pixel"}, max_steps=1,
                                     checkpoint_every=1))
    assert (run / "model_index.json").is_file()
    with pytest.raises(DistillError, match="sd.taesd"):
        make_decoder(load_sd_teacher(tiny_sd), str(tmp_path / "missing"))


def test_latent_student_with_dmd_and_per_step_heads_resumes_exactly(tiny_sd, tmp_path):
    """The distillation features of the one loop in the latent space: the DMD2 fake score (a full copy of
    the teacher UNet beside a LoRA student), one head set per student timestep and timestep weights; a
    resumed run ends where an unbroken one does, and the fake score moved."""
    over = dict(distill={"lambda_dmd": 1.0, "timestep_weights": [2, 1, 1, 1]},
                discriminator={"heads_per_timestep": True}, sd={"lora_rank": 4}, max_steps=3, checkpoint_every=3)
    full = train_sd_distill(sd_recipe(tmp_path / "a", tiny_sd, **over))
    rows = [r for r in read_metrics(full / "metrics.jsonl") if "loss_dmd" in r]
    assert len(rows) == 3 and all("loss_fake_score" in r for r in rows)
    part = train_sd_distill(sd_recipe(tmp_path / "b", tiny_sd, interrupt_at=2, **over))
    train_sd_distill(sd_recipe(tmp_path / "b", tiny_sd, resume_from_checkpoint="latest", **over))
    for name in ["student.safetensors", "heads.safetensors", "fake_score.safetensors"]:
        a = load_file(full / "checkpoints/checkpoint-3" / name)
        b = load_file(part / "checkpoints/checkpoint-3" / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name
    one_set = load_file(train_sd_distill(sd_recipe(tmp_path / "c", tiny_sd, max_steps=1, checkpoint_every=1,
                                                   sd={"lora_rank": 4})) / "checkpoints/checkpoint-1/heads.safetensors")
    assert len(load_file(full / "checkpoints/checkpoint-3/heads.safetensors")) == 4 * len(one_set)
    unet = StableDiffusionPipeline.from_pretrained(tiny_sd).unet.state_dict()
    fake = load_file(full / "checkpoints/checkpoint-3/fake_score.safetensors")
    assert max(float((fake[k] - unet[k]).abs().max()) for k in fake) > 0
