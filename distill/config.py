"""Recipes: YAML files parsed into typed dataclasses.

A recipe is a tree of dataclasses (`Recipe` below). `load_recipe(path, overrides)` reads the YAML
with `yaml.safe_load`, applies `section.key=value` overrides, and checks every key and type
against the dataclass fields: an unknown key, a wrong type or a missing required value raises a
`RecipeError` naming the file and the dotted key. The resolved recipe is written into the run
folder with `dump_recipe` (EDM2's `training_options.json`, as YAML).

Later tasks add their sections here (one dataclass each); the task registry in `distill.tasks`
decides which sections a task reads.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from .errors import RecipeError
from .sd.config import SDConfig
from .translate.config import TranslateConfig


# ----------------------------------------------------------------------------------------------
# Sections


@dataclass
class DataConfig:
    source: str = "digits"  # "digits" | path/to/file.npz | image folder | Hub dataset name
    split: str = "train"
    resolution: int = 16
    channels: int = 1
    image_key: Optional[str] = None  # npz array / dataset column; None: x_{split}, images, image, img
    label_key: Optional[str] = None  # None: y_{split}, labels, label; "" for unlabelled data
    limit: Optional[int] = None  # keep the first `limit` images (quick runs)


@dataclass
class TeacherConfig:
    kind: str = "unet2d"  # registry key in distill.teachers.TEACHERS
    pretrained: Optional[str] = None  # exported pipeline folder or Hub id to start from
    block_out_channels: list[int] = field(default_factory=lambda: [16, 32, 64])
    layers_per_block: int = 1
    attention: bool = False  # self-attention at the lowest resolution
    norm_num_groups: int = 8
    class_conditional: bool = True
    prediction_type: Literal["epsilon", "v_prediction", "sample"] = "v_prediction"
    beta_schedule: str = "squaredcos_cap_v2"
    num_train_timesteps: int = 1000
    cond_drop_prob: float = 0.1  # label dropout for classifier-free guidance


@dataclass
class TrainConfig:
    max_steps: int = 2000
    batch_size: int = 128  # global batch per optimizer step, split across processes
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-3
    # any name of diffusers.optimization.get_scheduler, or "wsd": warm-up, constant, then a linear decay to 0 over the
    # last lr_decay_fraction of max_steps (warmup-stable-decay, Hägele et al. 2024)
    lr_scheduler: str = "cosine"
    lr_decay_fraction: float = 0.2
    lr_warmup_steps: int = 100
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    ema_decay: float = 0.999
    # None: diffusers' default warm-up, decay_n = min(ema_decay, (1 + n) / (10 + n)), which caps the decay at 0.9926
    # after 1200 steps whatever ema_decay says; p: diffusers' use_ema_warmup, decay_n = min(ema_decay, 1 - (1 + n)^-p),
    # an average over the last ~n^p steps (p = 3/4: ~200 of 1200; p = 1: every step so far)
    ema_power: Optional[float] = None
    seed: int = 0
    log_every: int = 50
    sample_every: int = 500
    checkpoint_every: int = 500
    checkpoints_total_limit: Optional[int] = 2
    resume_from_checkpoint: Optional[str] = None  # a checkpoint folder or "latest"
    interrupt_at: Optional[int] = None  # stop after this step with a checkpoint, as a pre-empted job would


@dataclass
class EvalConfig:
    num_samples: int = 2000
    steps: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 25, 50])
    scheduler: str = "ddim"  # registry key in distill.sampling.SCHEDULERS
    guidance_scale: float = 1.0
    batch_size: int = 500
    features: str = "classifier:digits"  # "classifier:<name or .safetensors path>" | "inception"
    reference_split: str = "test"
    seed: int = 1234


@dataclass
class DistillConfig:
    """Adversarial Diffusion Distillation (Sauer et al. 2023): L = adv_weight L_adv + lambda L_distill."""

    teacher: str = ""  # exported teacher pipeline: folder, Hub id, or shipped:<name>
    student_timesteps: list[int] = field(default_factory=lambda: [999, 749, 499, 249])
    # how often each student timestep is drawn for training (normalised; empty: uniform, as ADD): more weight on
    # 999 gives the 1-step sampler a larger share of every batch
    student_timestep_weights: list[float] = field(default_factory=list)
    # distillation loss (Eq. 4-5, ADD)
    lambda_distill: float = 2.5
    distill_weighting: Literal["exponential", "sds", "nfsd"] = "exponential"  # c(t)
    teacher_guidance: float = 2.0  # classifier-free guidance of the teacher's target
    distill_t_min: int = 20
    distill_t_max: int = 980
    # adversarial loss and discriminator
    adv_loss: str = "hinge"  # registry key in distill.gan.losses.ADV_LOSSES
    adv_weight: float = 1.0  # 0: distillation loss alone (ablation)
    r1_gamma: float = 1e-5  # R1 on the heads' inputs (real), weight gamma / 2
    r1_every: int = 1  # lazy R1 (StyleGAN2): on every r1_every-th step only, weighted gamma x r1_every
    # "teacher" (LADD) | "fake_score" (DMD2: the fake score's encoder, trained) | "timm:<name>" (ADD, e.g.
    # timm:vit_small_patch14_dinov2)
    backbone: str = "teacher"
    backbone_pretrained: str = "hub"  # "hub" | "none" | path to a weights file (timm backbones)
    backbone_layers: list[int] = field(default_factory=list)  # timm blocks; empty: spread over depth
    backbone_img_size: int = 224  # timm input size
    disc_t_min: int = 0  # noise level range of the teacher-feature discriminator
    disc_t_max: int = 500
    head_channels: int = 64
    spectral_norm: bool = True
    head_norm: Literal["group", "none"] = "group"  # normalisation after the heads' first conv
    augment: str = "color,translation,cutout"  # DiffAugment policy; "" for none
    d_learning_rate: float = 1e-4
    d_steps: int = 1  # discriminator updates per student update
    # student timesteps whose outputs the adversarial game covers (empty: all, as ADD): the discriminator
    # learns from, and the student's adversarial term applies to, only these; [999]: 1-step outputs only
    disc_timesteps: list[int] = field(default_factory=list)
    # one set of heads per student timestep (each judges only that step's outputs and their real partners):
    # one shared set cannot separate 1-step and 4-step outputs from real images at once (benchmarks/disc_probe.py)
    disc_heads_per_timestep: bool = False
    adam_beta1: float = 0.0
    adam_beta2: float = 0.99
    # distribution matching (DMD2, Yin et al. 2024): a fake score network, initialised from the teacher,
    # follows the student's samples; the student descends KL(p_student || p_teacher) through it
    lambda_dmd: float = 0.0  # 0: off (ADD alone)
    fake_learning_rate: float = 1e-4  # the fake score network's Adam lr (one update per D update)
    # backbone fake_score: weight of the discriminator loss in the fake score's update, beside its denoising
    # loss (DMD2 weights its classifier loss 1e-2 there); the heads always take it at weight 1
    fake_score_disc_weight: float = 1.0
    coverage_every: int = 250  # mode-coverage check with the evaluation classifier (monitoring only)
    coverage_classifier: Optional[str] = None  # "digits" | "mnist" | path; None: no check


@dataclass
class ReportConfig:
    """What `distill run` measures after distilling (FID table, latency, grids)."""

    teacher_steps: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 25, 50])
    student_steps: list[int] = field(default_factory=lambda: [1, 2, 4])
    latency_batch: int = 64
    latency_repeats: int = 5


@dataclass
class Recipe:
    task: str  # required: registry key in distill.tasks.TASKS ("teacher", ...)
    name: str = "run"
    output_dir: str = "runs/run"  # the run folder
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    translate: TranslateConfig = field(default_factory=TranslateConfig)
    sd: SDConfig = field(default_factory=SDConfig)


# ----------------------------------------------------------------------------------------------
# Parsing and validation


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, where: str) -> Any:
    """Check `value` against the annotation `tp`; return it (ints are accepted for floats)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key, where)
            except RecipeError as e:
                errors.append(e)
        raise RecipeError(f"{where}: key '{key}' expects {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value is False and "no" in args:  # YAML 1.1 reads a bare `no` (mixed_precision: no) as false
            value = "no"
        if value not in args:
            raise RecipeError(f"{where}: key '{key}' must be one of {list(args)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise RecipeError(f"{where}: key '{key}' expects a list, got {value!r}")
        return [_coerce(v, args[0], f"{key}[{i}]", where) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: key '{key}' expects a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key, where)
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecipeError(f"{where}: key '{key}' expects a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecipeError(f"{where}: key '{key}' expects an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise RecipeError(f"{where}: key '{key}' expects true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise RecipeError(f"{where}: key '{key}' expects a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {tp} for {key}")


def _build(cls: type, data: Any, prefix: str, where: str):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(f"{where}: key '{prefix or '<top>'}' expects a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for k in data:
        if k not in fields:
            dotted = f"{prefix}.{k}" if prefix else str(k)
            raise RecipeError(f"{where}: unknown key '{dotted}' (allowed: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        dotted = f"{prefix}.{name}" if prefix else name
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], dotted, where)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise RecipeError(f"{where}: missing required key '{dotted}'")
    return cls(**kwargs)


def apply_override(tree: dict, override: str, where: str = "command line") -> None:
    """Apply one `section.key=value` override; the value is parsed as YAML (`1e-4`, `[1, 2]`)."""
    if "=" not in override:
        raise RecipeError(f"{where}: override '{override}' is not of the form section.key=value")
    dotted, raw = override.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    node = tree
    parts = dotted.strip().split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise RecipeError(f"{where}: override '{dotted}': '{p}' is not a section")
    node[parts[-1]] = value


def recipe_from_dict(data: Any, where: str = "<recipe>", cls: type = Recipe):
    return _build(cls, data, "", where)


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: recipe file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise RecipeError(f"{path}: not valid YAML{line}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping of sections")
    for o in overrides:
        apply_override(data, o)
    return recipe_from_dict(data, str(path))


def recipe_to_dict(recipe) -> dict:
    return dataclasses.asdict(recipe)


def dump_recipe(recipe, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False))
