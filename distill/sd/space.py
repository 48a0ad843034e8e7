"""The latent space of the distillation loop: a Stable Diffusion teacher (SD 1.x/2.x, SDXL),
latents of real images (ADD) or cached teacher samples (LADD), text conditioning with pooled
embeddings, the VAE decoder as the codec, and LoRA students that share the teacher's UNet.

With LoRA (sd.lora_rank > 0) the student is the teacher UNet plus adapters; the teacher and the
discriminator features run the same UNet with adapters disabled (`as_teacher`), so the UNet is held
in memory once. The discriminator reads the teacher UNet's own encoder on the noised latent,
text-conditioned (LADD), or a timm model on decoded images (ADD); its heads are conditioned on the
pooled text embedding by projection.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from diffusers import DDPMScheduler

from ..diffusion.denoiser import Denoiser
from ..discriminator import build_backbone
from ..errors import DistillError, RecipeError
from .data import LatentSet, encode_images, load_captioned_images, prompt_list, synthetic_latents
from .export import export_student
from .features import DecodedFeatures, SDTeacherFeatures
from .lora import LoraWeights, add_lora, as_teacher, unsharded_copy
from .teacher import TextCond, TextConditioning, encode_prompts, load_sd_teacher, make_decoder, null_cond

DTYPES = {"no": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class LatentSpace:
    tag = "sd-distill"  # names the random stream of every draw
    label = "sd-distill"
    head_classes = None

    def __init__(self, recipe):
        self.recipe = recipe

    def check_launch(self, accelerator) -> None:
        """Fail early on launches this space does not support (one line each)."""
        from accelerate.utils import DistributedType

        from ..engine.checkpoint import is_fsdp

        r = self.recipe
        if accelerator.distributed_type == DistributedType.DEEPSPEED:
            raise DistillError("DeepSpeed is not supported by sd-distill (it prepares two models and two optimizers; "
                               "accelerate needs one DeepSpeed engine per model): use DDP or FSDP")
        if is_fsdp(accelerator):
            if not accelerator.is_fsdp2:
                raise DistillError("sd-distill under FSDP needs fsdp_version: 2 (see recipes/accelerate/fsdp.yaml)")
            if r.train.ema_decay > 0:
                raise DistillError("train.ema_decay > 0 is not supported under FSDP (the EMA would hold sharded "
                                   "parameters): set train.ema_decay: 0")
            if r.distill.lambda_dmd > 0:
                raise DistillError("distill.lambda_dmd > 0 is not supported under FSDP (the fake score network is not "
                                   "sharded): use DDP")

    def load(self, engine) -> None:
        r, sc = self.recipe, self.recipe.sd
        acc, dev = engine.accelerator, engine.device
        if sc.build_tiny:
            if acc.is_main_process:
                from .tiny import build_tiny_sd, build_tiny_sdxl

                (build_tiny_sdxl if sc.tiny_kind == "sdxl" else build_tiny_sd)(r.distill.teacher, r.data.resolution)
            acc.wait_for_everyone()
        self.wdt = wdt = DTYPES[acc.mixed_precision]  # what accelerate runs ("auto" resolved)
        tpipe = self.pipe = load_sd_teacher(r.distill.teacher, sc.revision, sc.variant)
        tpipe.to(dev)
        for name in ("text_encoder", "text_encoder_2"):  # frozen: held in the compute dtype
            if getattr(tpipe, name, None) is not None:
                getattr(tpipe, name).to(dtype=wdt)
        if wdt == torch.bfloat16:  # fp16 VAEs overflow (SDXL); bf16 is safe
            tpipe.vae.to(dtype=wdt)
        self.noise_scheduler = DDPMScheduler.from_config(tpipe.scheduler.config)
        self.R = R = r.data.resolution
        f = 2 ** (len(tpipe.vae.config.block_out_channels) - 1)
        if R % f:
            raise RecipeError(f"data.resolution={R} must be a multiple of the VAE factor {f}")
        self.decode = make_decoder(tpipe, sc.taesd)
        with acc.autocast():  # bf16 text encoders / VAE with the fp32 UNet (synthetic samples)
            self.data = self._latents(engine.run_dir)
            self.uncond1 = null_cond(tpipe, 1, R, dev)  # the teacher's unconditional input, encoded once
        self.head_cond_dim = self.uncond1.pooled.shape[-1] if sc.disc_text_cond else None
        self.teacher = Denoiser.from_scheduler(tpipe.unet, self.noise_scheduler, TextConditioning(self.uncond1))
        self._fake = copy.deepcopy(tpipe.unet) if r.distill.lambda_dmd > 0 else None  # no random draws

    def _latents(self, run_dir: Path) -> LatentSet:
        r, sc = self.recipe, self.recipe.sd
        if sc.input == "real":
            images, caps = load_captioned_images(r.data, sc)
            return LatentSet(encode_images(self.pipe.vae, images), caps)
        cache = Path(sc.synthetic_cache) if sc.synthetic_cache else run_dir / "cache"
        return synthetic_latents(self.pipe, prompt_list(r.data, sc), sc.synthetic_count, sc.synthetic_steps,
                                 r.distill.teacher_guidance, self.R, r.train.seed, cache, r.distill.teacher)

    def make_student(self):
        """(student UNet, trainable parameters): LoRA adapters on the teacher's UNet, or a full fp32 copy."""
        sc, unet = self.recipe.sd, self.pipe.unet
        if sc.lora_rank > 0:  # one UNet: frozen base = teacher, base + adapters = student
            student = unet.to(dtype=self.wdt)
            add_lora(student, sc.lora_rank, sc.lora_alpha, sc.lora_target_modules, sc.lora_dropout)
            for p in student.parameters():
                if p.requires_grad:
                    p.data = p.data.float()  # trainable adapters in fp32 (mixed precision)
        else:
            student = copy.deepcopy(unet).float().requires_grad_(True)
            unet.to(dtype=self.wdt)
        if sc.gradient_checkpointing:
            student.enable_gradient_checkpointing()
        student.train()
        return student, [p for p in student.parameters() if p.requires_grad]

    def make_fake_score(self):
        """DMD2's fake score network: a full fp32 copy of the teacher's UNet, taken before any adapter."""
        return self._fake.float().requires_grad_(True).train()

    def student_weights(self, net):
        return LoraWeights(net) if self.recipe.sd.lora_rank > 0 else net

    def backbone(self, fake_score):
        dc = self.recipe.discriminator
        if dc.backbone == "teacher":
            return SDTeacherFeatures(self.teacher.net, self.teacher)
        if dc.backbone == "fake_score":
            raise RecipeError("discriminator.backbone=fake_score is implemented for pixel students only (task: distill)")
        pixel = build_backbone(dc.backbone, None, None, dc.backbone_layers or None,
                               dc.backbone_pretrained, dc.backbone_img_size)
        return DecodedFeatures(pixel, self.decode).to(self.pipe.unet.device)

    def batch(self, idx):
        """(latents z0 (n, 4, h, w), captions) of the global batch."""
        return self.data.batch(idx)

    def shard_cond(self, captions, rank: int, P: int, device) -> TextCond:
        m = len(captions) // P
        return encode_prompts(self.pipe, captions[rank * m:(rank + 1) * m], self.R, device)

    @staticmethod
    def cat_cond(a, b):
        return TextCond.cat(a, b)

    def discriminate(self, disc, x, cond, t_d, noise, u, **kw):
        """Heads conditioned on the pooled text embedding; logits in fp32."""
        c = cond.pooled.float() if self.recipe.sd.disc_text_cond else None
        logits, feats = disc(x, cond, t_d, noise, u, c=c, **kw)
        return logits.float(), feats

    def teacher_mode(self):
        return as_teacher(self.teacher.net)

    def regression_pair(self, fake, target):
        """The regression term in latents, or through the VAE decoder (sd.loss_space pixel, as ADD)."""
        if self.recipe.sd.loss_space != "pixel":
            return fake, target
        with torch.no_grad():
            target = self.decode(target)
        return self.decode(fake), target

    def monitor(self, student_net, step: int, run_dir: Path):
        return None  # the report draws the grids after training

    def gather_student(self, accelerator, raw_student, prepared):
        from ..engine.checkpoint import gathered, is_fsdp

        if not is_fsdp(accelerator):
            return raw_student
        full = gathered(accelerator, prepared)  # every process gathers the shards
        return unsharded_copy(raw_student, full) if accelerator.is_main_process else None

    def export(self, student_net, folder: Path) -> None:
        export_student(folder, self.pipe, student_net, self.recipe.distill.student_timesteps, self.recipe.sd.export_dtype)

    def report(self, run_dir: Path) -> None:
        from .report import write_sd_report

        print(f"report: {write_sd_report(self.recipe, run_dir)}")


def run_sd_distill(recipe) -> Path:
    """`distill run` for task: sd-distill: the one distillation loop in the latent space."""
    from ..distillation.loop import run_distill

    return run_distill(recipe, LatentSpace(recipe))


def train_sd_distill(recipe) -> Path:
    from ..distillation.loop import train_distill

    return train_distill(recipe, LatentSpace(recipe))
