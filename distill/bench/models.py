"""What to time: the `MODELS` registry. Each entry says how to load a model, which cases (steps,
guidance) to time, and how to call it at a batch size (`Prepared`: the end-to-end call, its network
evaluations, the bare network forward where there is one, the components to instrument).

- `teacher`, `student`: diffusion pipelines, called as users call them (`output_type="pt"`),
- `generator`: translator-style generators `G(x)` (pix2pix, CycleGAN: TorchScript or py:module:factory),
- `gan`: a `task: gan` generator folder (any kind), one forward from (z, class labels).

A new thing to time is one `MODELS` entry.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from accelerate.utils import extract_model_from_parallel

from ..diffusion.denoiser import LabelCond
from ..errors import DistillError
from .config import DTYPES, BenchConfig


@dataclass
class Prepared:
    """One configuration ready to call."""

    call: Callable[[], Any]  # one end-to-end call producing `batch` images
    nfe: int  # network (denoiser) evaluations per image: steps x (2 with guidance); 1 for a generator
    denoiser_calls: int  # denoiser forwards per end-to-end call (guidance batches cond + uncond: 2B)
    bare: Optional[Callable[[], Any]] = None  # one bare denoiser forward at `bare_batch`
    bare_batch: int = 0
    components: list[tuple[str, Any, str]] = field(default_factory=list)  # (component, object, method)
    scheduler: str = ""


@dataclass(frozen=True)
class ModelSpec:
    load: Callable[[str, BenchConfig], Any]
    cases: Callable[[Any, BenchConfig], list[tuple[int, float]]]  # (steps, guidance)
    prepare: Callable[[Any, int, float, int, BenchConfig], Prepared]  # (handle, steps, guidance, batch, cfg)
    params: Callable[[Any], int]  # parameters of every network the call runs


def count_params(*modules) -> int:
    return sum(p.numel() for m in modules if isinstance(m, torch.nn.Module) for p in m.parameters())


# ---------------------------------------------------------------- diffusion pipelines


def load_pipeline(path: str, cfg: BenchConfig):
    from ..diffusion.teachers import load_teacher, resolve_teacher_path

    path = resolve_teacher_path(path)  # shipped:<name> -> distill/assets/teachers/<name>
    if not Path(path).is_dir():
        raise DistillError(f"{path}: no such pipeline folder")
    from diffusers.utils import logging as dlog

    dlog.disable_progress_bar()
    try:
        pipe = load_teacher(path)
    finally:
        dlog.enable_progress_bar()
    pipe.set_progress_bar_config(disable=True)
    for name in ("unet", "vae", "text_encoder"):
        mod = getattr(pipe, name, None)
        if isinstance(mod, torch.nn.Module):
            dtype = DTYPES[cfg.dtype]
            mod.to(device=cfg.device, **({"dtype": dtype} if mod.dtype != dtype else {})).eval()
            if cfg.channels_last and name != "text_encoder":
                mod.to(memory_format=torch.channels_last)
    if cfg.compile:
        pipe.unet = torch.compile(pipe.unet)
    return pipe


def teacher_cases(pipe, cfg: BenchConfig) -> list[tuple[int, float]]:
    scales = [1.0] + ([cfg.guidance] if pipe.num_classes is not None and cfg.guidance != 1.0 else [])
    return [(s, g) for g in scales for s in cfg.teacher_steps]


def student_cases(pipe, cfg: BenchConfig) -> list[tuple[int, float]]:
    return [(s, 1.0) for s in cfg.student_steps]  # the student is distilled with guidance built in


def prepare_pipeline(pipe, steps: int, guidance: float, batch: int, cfg: BenchConfig) -> Prepared:
    unet, sched = pipe.unet, pipe.scheduler
    ucfg = unet.config
    k = pipe.num_classes
    labels = (torch.arange(batch) % k).to(cfg.device) if k else None  # (B,)
    guided = labels is not None and guidance != 1.0

    def call():  # (B, C, H, W) in [0, 1]
        return pipe(class_labels=labels, batch_size=batch, num_inference_steps=steps, guidance_scale=guidance,
                    output_type="pt").images

    mult = 2 if guided else 1
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    x = torch.randn(batch * mult, ucfg.in_channels, ucfg.sample_size, ucfg.sample_size, device=cfg.device,
                    dtype=DTYPES[cfg.dtype]).to(memory_format=fmt)  # (mB, C, H, W)
    y = None
    if labels is not None:
        y = torch.cat([labels, torch.full_like(labels, k)]) if guided else labels  # (mB,)
    t = torch.tensor(sched.config.num_train_timesteps - 1, device=cfg.device)  # first step of trailing spacing
    cond = LabelCond.of(unet)  # how labels reach the network (UNet2DModel, DiT)

    def bare():
        with torch.no_grad():
            return cond.call(unet, x, t, y)

    comps = [("denoiser", unet, "forward")]
    comps += [("scheduler", sched, m) for m in ("set_timesteps", "scale_model_input", "step") if hasattr(sched, m)]
    if getattr(pipe, "vae", None) is not None:
        comps.append(("decoder", pipe.vae, "decode"))
    if getattr(pipe, "text_encoder", None) is not None:
        comps.append(("text_encoder", pipe.text_encoder, "forward"))
    return Prepared(call=call, nfe=steps * mult, denoiser_calls=steps, bare=bare, bare_batch=batch * mult,
                    components=comps, scheduler=type(sched).__name__)


def pipeline_params(pipe) -> int:
    """The denoiser's, plus a decoder's and a text encoder's where the pipeline has them."""
    return count_params(*(getattr(pipe, n, None) for n in ("unet", "vae", "text_encoder")))


# ---------------------------------------------------------------- generators (pix2pix, CycleGAN, ...)


def _load_py(spec: str):
    mod, _, attr = spec.partition(":")
    try:
        obj = getattr(importlib.import_module(mod), attr or "build")
    except (ImportError, AttributeError) as e:
        raise DistillError(f"py:{spec}: cannot import ({e})") from None
    return obj() if callable(obj) and not isinstance(obj, torch.nn.Module) else obj


def _load_file(path: str):
    if not Path(path).is_file():
        raise DistillError(f"{path}: no such generator file")
    try:  # TorchScript only: a pickled module would execute code from the file (never unpickled here)
        return torch.jit.load(path, map_location="cpu")
    except RuntimeError as e:
        raise DistillError(f"{path}: not a TorchScript module ({str(e).splitlines()[0]}); "
                           "use py:<module>:<builder> for a generator built in code") from None


GENERATOR_LOADERS: dict[str, Callable[[str], Any]] = {"py": _load_py, "jit": _load_file, "file": _load_file}


@dataclass
class Generator:
    module: torch.nn.Module
    input_shape: tuple[int, int, int]  # (C, H, W)


def load_generator(spec: str, cfg: BenchConfig) -> Generator:
    scheme, _, rest = spec.partition(":")
    loader = GENERATOR_LOADERS.get(scheme) if rest and scheme in GENERATOR_LOADERS else None
    module = loader(rest) if loader else _load_file(spec)
    if not isinstance(module, torch.nn.Module):
        raise DistillError(f"{spec}: loaded a {type(module).__name__}, not a torch.nn.Module")
    shape = cfg.generator_input or getattr(module, "input_shape", None) or (3, 256, 256)
    if len(shape) != 3:
        raise DistillError(f"--generator-input: expected C H W, got {list(shape)}")
    module = module.to(cfg.device, DTYPES[cfg.dtype]).eval()
    if cfg.channels_last:
        module = module.to(memory_format=torch.channels_last)
    if cfg.compile:
        module = torch.compile(module)
    return Generator(module, tuple(int(s) for s in shape))


def prepare_generator(gen: Generator, steps: int, guidance: float, batch: int, cfg: BenchConfig) -> Prepared:
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    x = torch.randn(batch, *gen.input_shape, device=cfg.device, dtype=DTYPES[cfg.dtype]).to(memory_format=fmt)

    def call():  # (B, C', H', W')
        with torch.no_grad():
            return gen.module(x)

    scripted = isinstance(gen.module, torch.jit.ScriptModule)
    return Prepared(call=call, nfe=1, denoiser_calls=1,  # the call is the bare forward: nothing to compare
                    components=[] if scripted else [("generator", gen.module, "forward")])


# ---------------------------------------------------------------- GAN generators (`task: gan`)


def load_gan(path: str, cfg: BenchConfig):
    """An exported GAN generator folder (config.json + safetensors), on the device in the dtype."""
    from ..gan.architectures import load_generator as load_gan_folder

    if not Path(path).is_dir():
        raise DistillError(f"--gan {path}: no such GAN generator folder")
    dtype = DTYPES[cfg.dtype]
    G = load_gan_folder(path).to(device=cfg.device, **({"dtype": dtype} if dtype != torch.float32 else {}))
    if cfg.channels_last:
        G = G.to(memory_format=torch.channels_last)
    return torch.compile(G) if cfg.compile else G


def prepare_gan(G, steps: int, truncation: float, batch: int, cfg: BenchConfig) -> Prepared:
    """One forward from (z, class labels) to images in [0, 1], as a pipeline's `output_type="pt"` returns."""
    gen = extract_model_from_parallel(G, keep_torch_compile=False)  # the module under torch.compile
    k = gen.config.num_classes
    z = torch.randn(batch, gen.config.z_dim, device=cfg.device, dtype=DTYPES[cfg.dtype])  # (B, z_dim)
    labels = (torch.arange(batch) % k).to(cfg.device) if k else None  # (B,), class-balanced like the pipelines

    def call():  # (B, C, H, W) in [0, 1]
        with torch.no_grad():
            return G(z, labels, truncation=truncation).clamp(-1, 1).add(1).div(2)

    return Prepared(call=call, nfe=1, denoiser_calls=1,  # the call is the bare forward: nothing to compare
                    components=[("generator", gen, "forward")])


MODELS: dict[str, ModelSpec] = {
    "teacher": ModelSpec(load=load_pipeline, cases=teacher_cases, prepare=prepare_pipeline, params=pipeline_params),
    "student": ModelSpec(load=load_pipeline, cases=student_cases, prepare=prepare_pipeline, params=pipeline_params),
    "generator": ModelSpec(load=load_generator, cases=lambda g, cfg: [(1, 1.0)], prepare=prepare_generator,
                           params=lambda g: count_params(g.module)),
    # one forward; the case's second field is the truncation psi (1: none; a lerp, no cost to speak of)
    "gan": ModelSpec(load=load_gan, cases=lambda G, cfg: [(1, 1.0)], prepare=prepare_gan, params=count_params),
}


def _named(specs: list[str], kind: str) -> list[tuple[str, str, str]]:
    """[NAME=]PATH entries -> (name, kind, path); unnamed ones are `kind`, `kind0`, `kind1`, ..."""
    out = []
    for i, spec in enumerate(specs):
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = f"{kind}{i if len(specs) > 1 else ''}", spec
        out.append((name, kind, path))
    return out


def model_list(cfg: BenchConfig) -> list[tuple[str, str, str]]:
    """(display name, MODELS key, path) for everything given."""
    out = [(k, k, p) for k, p in (("teacher", cfg.teacher), ("student", cfg.student)) if p]
    return out + _named(cfg.generators, "generator") + _named(cfg.gans, "gan")
