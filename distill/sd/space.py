"""The latent space of the distillation loop: a Stable Diffusion teacher (SD 1.x/2.x, SDXL with a
UNet; SD3, Flux with an MMDiT transformer and flow matching: distill.sd.families), latents of real
images (ADD) or cached teacher samples (LADD), text conditioning with pooled embeddings, the VAE
decoder as the codec, and LoRA students that share the teacher's network.

With LoRA (sd.lora_rank > 0) the student is the teacher network plus adapters; the teacher and the
discriminator features run the same network with adapters disabled (`as_teacher`), so it is held
in memory once. The discriminator reads the teacher's own features on the noised latent,
text-conditioned (LADD: the UNet's encoder, or the transformer's token features), or a timm model
on decoded images (ADD); its heads are conditioned on the pooled text embedding by projection (and,
with sd.disc_noise_cond, on the discriminator's noise level, as LADD's heads).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from ..diffusion.denoiser import Denoiser
from ..distillation.recipe import sampler_grid_steps
from ..distillation.space import DistillationSpace
from ..discriminator import build_backbone
from ..engine.messages import get_logger
from ..errors import DistillError, RecipeError
from .data import LatentSet, encode_images, load_captioned_images, prompt_list, synthetic_latents
from .export import export_student
from .families import family_of, network
from .features import DecodedFeatures
from .lora import LoraWeights, add_lora, as_teacher, unsharded_copy
from .teacher import TextCond, load_sd_teacher, make_decoder

logger = get_logger(__name__)

DTYPES = {"no": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
NOISE_COND_DIM = 16  # sd.disc_noise_cond: sin/cos features of the discriminator's noise level


def noise_embedding(level: torch.Tensor) -> torch.Tensor:
    """(B,) noise levels t/T in [0, 1] -> (B, NOISE_COND_DIM) Fourier features (frequencies 2^k pi, k < 8)."""
    freqs = torch.pi * 2.0 ** torch.arange(NOISE_COND_DIM // 2, device=level.device)
    angles = level[:, None] * freqs  # (B, 8)
    return torch.cat([angles.sin(), angles.cos()], 1)


class LatentSpace(DistillationSpace):
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
                from .tiny_transformer import TINY_PIPELINES

                TINY_PIPELINES[sc.tiny_kind](r.distill.teacher, r.data.resolution)
            acc.wait_for_everyone()
        self.wdt = wdt = DTYPES[acc.mixed_precision]  # what accelerate runs ("auto" resolved)
        tpipe = self.pipe = load_sd_teacher(r.distill.teacher, sc.revision, sc.variant)
        fam = self.family = family_of(tpipe)
        tpipe.to(dev)
        for name in fam.text_encoders:  # frozen: held in the compute dtype
            if getattr(tpipe, name, None) is not None:
                getattr(tpipe, name).to(dtype=wdt)
        if wdt == torch.bfloat16:  # fp16 VAEs overflow (SDXL); bf16 is safe
            tpipe.vae.to(dtype=wdt)
        self.noise_scheduler = fam.noise_scheduler(tpipe)
        self.R = R = r.data.resolution
        f = 2 ** (len(tpipe.vae.config.block_out_channels) - 1)
        if R % (f * fam.patch):
            raise RecipeError(f"data.resolution={R} must be a multiple of {f * fam.patch} (the VAE factor {f} "
                              f"x the latent patch {fam.patch} of the teacher network)")
        self.decode = make_decoder(tpipe, sc.taesd)
        with acc.autocast(), acc.main_process_first():  # bf16 text encoders / VAE with the fp32 network;
            self.data = self._latents(engine.run_dir)  # synthetic samples made and cached once, then read
            self.uncond1 = fam.uncond(tpipe, R, dev)  # the teacher's unconditional input, encoded once
        dim = (self.uncond1.pooled.shape[-1] if sc.disc_text_cond else 0) + (NOISE_COND_DIM if sc.disc_noise_cond else 0)
        self.head_cond_dim = dim or None
        self.cond = fam.conditioning(self.uncond1, tpipe, r.distill.teacher_guidance)
        if r.distill.distill_weighting == "nfsd" and not self.cond.guidable(self.uncond1):
            raise RecipeError("distill.distill_weighting: nfsd needs classifier-free guidance, which this teacher "
                              "does not use (Flux is guidance-distilled or guidance-free): use exponential or sds")
        self.teacher = Denoiser.from_scheduler(network(tpipe), self.noise_scheduler, self.cond)
        self._fake = copy.deepcopy(network(tpipe)) if r.distill.lambda_dmd > 0 else None  # no random draws

    def _latents(self, run_dir: Path) -> LatentSet:
        r, sc = self.recipe, self.recipe.sd
        if sc.input == "real":
            images, caps = load_captioned_images(r.data, sc)
            return LatentSet(encode_images(self.pipe.vae, images), caps)
        cache = Path(sc.synthetic_cache) if sc.synthetic_cache else run_dir / "cache"
        return synthetic_latents(self.pipe, prompt_list(r.data, sc), sc.synthetic_count, sc.synthetic_steps,
                                 r.distill.teacher_guidance, self.R, r.train.seed, cache, r.distill.teacher,
                                 grid=lambda z: self.family.grid(z, self.R, self.pipe))

    def student_timesteps(self, ts):
        """The student's timesteps as the loop uses them: those the exported pipeline visits (distill.sd.families)."""
        return self.family.student_timesteps(ts, self.pipe, self.R, self.teacher)

    def make_student(self):
        """(student network, trainable parameters): LoRA adapters on the teacher's network, or a full fp32 copy."""
        sc, net = self.recipe.sd, network(self.pipe)
        if sc.lora_rank > 0:  # one network: frozen base = teacher, base + adapters = student
            student = net.to(dtype=self.wdt)
            add_lora(student, sc.lora_rank, sc.lora_alpha, sc.lora_target_modules or self.family.lora_targets,
                     sc.lora_dropout)
            for p in student.parameters():
                if p.requires_grad:
                    p.data = p.data.float()  # trainable adapters in fp32 (mixed precision)
        else:
            student = copy.deepcopy(net).float().requires_grad_(True)
            net.to(dtype=self.wdt)
        if sc.gradient_checkpointing:
            student.enable_gradient_checkpointing()
        student.train()
        return student, [p for p in student.parameters() if p.requires_grad]

    def make_fake_score(self):
        """DMD2's fake score network: a full fp32 copy of the teacher's network, taken before any adapter."""
        return self._fake.float().requires_grad_(True).train()

    def student_weights(self, net):
        return LoraWeights(net) if self.recipe.sd.lora_rank > 0 else net

    def backbone(self, fake_score):
        dc = self.recipe.discriminator
        if dc.backbone == "teacher":
            return self.family.features(self.teacher, dc.backbone_layers)
        if dc.backbone == "fake_score":
            raise RecipeError("discriminator.backbone=fake_score is implemented for pixel students only (task: distill)")
        pixel = build_backbone(dc.backbone, None, None, dc.backbone_layers or None,
                               dc.backbone_pretrained, dc.backbone_img_size)
        return DecodedFeatures(pixel, self.decode).to(network(self.pipe).device)

    def batch(self, idx):
        """(latents z0 (n, C, h, w), captions) of the global batch."""
        return self.data.batch(idx)

    def shard_cond(self, captions, rank: int, P: int, device) -> TextCond:
        m = len(captions) // P
        return self.family.encode(self.pipe, captions[rank * m:(rank + 1) * m], self.R, device)

    @staticmethod
    def cat_cond(a, b):
        return TextCond.cat(a, b)

    def discriminate(self, disc, x, cond, t_d, noise, u, **kw):
        """Heads conditioned on the pooled text embedding (and the noise level t_d); logits in fp32."""
        sc, parts = self.recipe.sd, []
        if sc.disc_text_cond:
            parts.append(cond.pooled.float())
        if sc.disc_noise_cond:
            parts.append(noise_embedding(t_d.float() / self.teacher.num_train_timesteps))
        c = torch.cat(parts, 1) if parts else None
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
        export_student(folder, self.pipe, student_net, self.recipe.distill.student_timesteps, self.recipe.sd.export_dtype,
                       self.cond, sampler_grid_steps(self.recipe))

    def report(self, run_dir: Path) -> None:
        from .report import write_sd_report

        logger.info(f"report: {write_sd_report(self.recipe, run_dir)}")


def run_sd_distill(recipe) -> Path:
    """`distill run` for task: sd-distill: the one distillation loop in the latent space."""
    from ..distillation.loop import run_distill

    return run_distill(recipe, LatentSpace(recipe))


def train_sd_distill(recipe) -> Path:
    from ..distillation.loop import train_distill

    return train_distill(recipe, LatentSpace(recipe))
