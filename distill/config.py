"""Recipes: YAML files parsed into typed dataclasses.

One recipe class per task (`distill.tasks.TASKS` names it): the sections a task reads and nothing
else, so a key the task does not use is an error, not a silent no-op. The sections every task
shares live here (`DataConfig`, `LoopConfig`/`TrainConfig`, `EvalConfig`); a task adds its own
beside its code. `load_recipe(path, overrides)` reads the YAML with `yaml.safe_load`, applies
`section.key=value` overrides and checks every key, type and range against the dataclass fields
(a top-level `base: other.yaml` reads that recipe first and merges this file's sections over it):
an unknown key, a wrong type, a value out of range or a missing required value raises a
`RecipeError` naming the file and the dotted key. A field's range is declared beside it with
`ranged(default, ge=..., gt=..., le=..., lt=..., nonempty=...)`; a recipe class may add
cross-field checks in a `validate(self, where)` method. The resolved recipe is written into the
run folder with `dump_recipe` (EDM2's `training_options.json`, as YAML).

This module imports no feature package: `distill.tasks` maps a task name to its recipe class as a
"module:Class" string, imported only when a recipe of that task is read.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from .errors import RecipeError


def ranged(default: Any = dataclasses.MISSING, *, ge=None, gt=None, le=None, lt=None, nonempty: bool = False,
           factory=None):
    """A dataclass field whose value (each element, for a list) must satisfy the given bounds;
    `nonempty` for lists that must hold at least one element. Checked at recipe load."""
    meta = {"range": dict(ge=ge, gt=gt, le=le, lt=lt), "nonempty": nonempty}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


# accelerate's tracker names (accelerate.utils.LoggerType; tests/test_messages.py checks the list) and "none"
TRACKERS = ("tensorboard", "none", "all", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive", "swanlab",
            "trackio")

# ----------------------------------------------------------------------------------------------
# Sections every task shares


@dataclass
class DataConfig:
    source: str = "digits"  # "digits" | path/to/file.npz | image folder | Hub dataset name
    split: str = "train"  # the split to train on (npz arrays x_<split>, Hub split, image-folder split folder)
    resolution: int = ranged(16, ge=1)  # images are resized to resolution x resolution
    channels: int = ranged(1, ge=1, le=4)  # 1 grey, 3 RGB (images are converted)
    image_key: Optional[str] = None  # npz array / dataset column; None: x_{split}, images, image, img
    label_key: Optional[str] = None  # None: y_{split}, labels, label; "" for unlabelled data
    limit: Optional[int] = ranged(None, ge=1)  # keep the first `limit` images (quick runs)


@dataclass
class LoopConfig:
    """What the training engine reads: steps, batch, precision, seed, logging, checkpoints, resume."""

    max_steps: int = ranged(2000, ge=1)  # optimizer steps
    batch_size: int = ranged(128, ge=1)  # global batch per optimizer step, split across processes
    gradient_accumulation_steps: int = ranged(1, ge=1)  # micro batches per optimizer step
    # "auto": bf16 where the device runs it natively (CUDA with bf16, a CPU with avx512_bf16/amx_bf16), else "no";
    # unset (null): accelerate's setting (`accelerate launch --mixed_precision`, its config, ACCELERATE_MIXED_PRECISION),
    # else "auto"; a set value that differs from accelerate's is used, with a warning
    mixed_precision: Optional[Literal["no", "fp16", "bf16", "auto"]] = None
    # intra-op CPU threads per process: "auto" (the usable cores / processes on the node, no more than the cores not
    # busy with other work, 1 for a small network: distill.engine.threads) or a count; one line at start says which
    num_threads: Union[Literal["auto"], int] = "auto"
    seed: int = ranged(0, ge=0)  # every random draw is a function of (seed, step)
    log_every: int = ranged(50, ge=1)  # a metrics.jsonl / tracker row every N steps
    # the experiment tracker accelerate logs to, under <run>/logs: any name of accelerate.utils.LoggerType ("all":
    # every installed one) or "none"; tensorboard (the default) is skipped where it is not installed, any other
    # named tracker must be installed. metrics.jsonl is written whatever this says
    report_to: Literal[TRACKERS] = "tensorboard"
    sample_every: int = ranged(500, ge=1)  # sample grids (and, for students, the coverage check)
    checkpoint_every: int = ranged(500, ge=1)  # atomic checkpoint every N steps (and at the last step)
    checkpoints_total_limit: Optional[int] = ranged(2, ge=1)  # keep the newest N; null: all
    resume_from_checkpoint: Optional[str] = None  # a checkpoint folder or "latest"
    interrupt_at: Optional[int] = ranged(None, ge=1)  # stop after this step with a checkpoint, as a pre-empted job would
    # a wall-clock budget: training ends (checkpoint, export, evaluation, as at max_steps) at the first step at which
    # this many minutes of training have passed, summed over resumes (set-up, samples and checkpoints count); for
    # comparisons at equal training time. null: max_steps only
    max_minutes: Optional[float] = ranged(None, gt=0)
    # the clock of max_minutes: "wall" (elapsed time), or "cpu" (this process's CPU time over all its threads): with one
    # thread per run, equal CPU budgets stay equal on a machine shared with other jobs, where wall budgets do not
    budget_clock: Literal["wall", "cpu"] = "wall"


@dataclass
class TrainConfig(LoopConfig):
    """The engine's keys plus one AdamW, its LR schedule, gradient clipping and the EMA."""

    learning_rate: float = ranged(1e-3, gt=0)  # AdamW learning rate (of the student, for distillation)
    # any name of diffusers.optimization.get_scheduler, or "wsd": warm-up, constant, then a linear decay to 0 over the
    # last lr_decay_fraction of max_steps (warmup-stable-decay, Hägele et al. 2024)
    lr_scheduler: str = "cosine"
    lr_decay_fraction: float = ranged(0.2, gt=0, le=1)  # wsd: the last fraction of max_steps decays
    lr_warmup_steps: int = ranged(100, ge=0)  # linear warm-up steps
    adam_beta1: float = ranged(0.9, ge=0, lt=1)  # Adam betas of every optimizer of the run
    adam_beta2: float = ranged(0.999, ge=0, lt=1)
    weight_decay: float = ranged(0.0, ge=0)  # AdamW weight decay (student / teacher)
    max_grad_norm: float = ranged(1.0, gt=0)  # gradient clipping (student / teacher)
    ema_decay: float = ranged(0.999, ge=0, lt=1)  # EMA of the trained weights, exported at the end; 0: none
    # None: diffusers' default warm-up, decay_n = min(ema_decay, (1 + n) / (10 + n)); p: diffusers' use_ema_warmup,
    # decay_n = min(ema_decay, 1 - (1 + n)^-p), an average over the last ~n^p steps (p = 1: every step so far)
    ema_power: Optional[float] = ranged(None, gt=0, le=1)


@dataclass
class ScoringConfig:
    """The `eval` keys every task shares: how many samples are scored, on which features, against which
    real images. Each task's eval section adds what it sweeps (sampler steps, truncation)."""

    num_samples: int = ranged(2000, ge=0)  # 0: no evaluation at the end of training
    batch_size: int = ranged(500, ge=1)  # sampling batch
    features: str = "classifier:digits"  # "classifier:<name or .safetensors path>" | "inception"
    reference_split: str = "test"  # the real images FID compares against
    seed: int = ranged(1234, ge=0)  # noise and labels of the scored samples


@dataclass
class EvalConfig(ScoringConfig):
    steps: list[int] = ranged(factory=lambda: [1, 2, 4, 8, 25, 50], ge=1, nonempty=True)  # sampler steps to score
    # registry key in distill.diffusion.sampling.SCHEDULERS; "auto": ddim for a DDPM-schedule model, flow-euler for flow
    scheduler: str = "auto"
    guidance_scale: float = ranged(1.0, ge=0)  # classifier-free guidance when sampling the teacher; 1: none
    # guidance scales a teacher's evaluation also scores: its best setting (lowest FID of all rows) may be guided
    guidance_sweep: list[float] = ranged(factory=list, ge=0)
    guidance_steps: int = ranged(25, ge=1)  # the sampler steps of the guidance_sweep rows


@dataclass
class RecipeBase:
    """The keys at the top of every recipe; a task's recipe class adds its sections."""

    task: str  # required: registry key in distill.tasks.TASKS ("teacher", "distill", ...)
    name: str = "run"
    output_dir: str = "runs/run"  # the run folder

    def validate(self, where: str) -> None:
        """Cross-field checks (a RecipeError naming `where` and the key); ranges are checked before."""


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
        if len(args) == 2 and type(None) in args:  # Optional[X]: X's own message (e.g. the allowed choices)
            return _coerce(value, next(a for a in args if a is not type(None)), key, where)
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
            _check_range(kwargs[name], f, dotted, where)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise RecipeError(f"{where}: missing required key '{dotted}'")
    return cls(**kwargs)


_BOUNDS = {"ge": (lambda v, b: v >= b, ">="), "gt": (lambda v, b: v > b, ">"),
           "le": (lambda v, b: v <= b, "<="), "lt": (lambda v, b: v < b, "<")}


def _check_range(value: Any, f: dataclasses.Field, dotted: str, where: str) -> None:
    """The bounds declared with `ranged` (each element of a list); NaN is never in range."""
    if f.metadata.get("nonempty") and isinstance(value, list) and not value:
        raise RecipeError(f"{where}: key '{dotted}' must not be empty")
    bounds = {k: b for k, b in f.metadata.get("range", {}).items() if b is not None}
    if not bounds or value is None:
        return
    for i, v in enumerate(value if isinstance(value, list) else [value]):
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        key = f"{dotted}[{i}]" if isinstance(value, list) else dotted
        if isinstance(v, float) and math.isnan(v):
            raise RecipeError(f"{where}: key '{key}' must be a number, got nan")
        for kind, b in bounds.items():
            ok, sym = _BOUNDS[kind]
            if not ok(v, b):
                rule = " and ".join(f"{_BOUNDS[k][1]} {bb}" for k, bb in bounds.items())
                raise RecipeError(f"{where}: key '{key}' must be {rule}, got {v}")


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


def recipe_from_dict(data: Any, where: str = "<recipe>", cls: Optional[type] = None):
    """A recipe object from a mapping: of class `cls`, or of the class the `task` key names."""
    if cls is None:
        if not isinstance(data, dict) or "task" not in data:
            raise RecipeError(f"{where}: missing required key 'task'")
        from .tasks import recipe_class  # the registry names classes as strings: no feature package here

        cls = recipe_class(data["task"], where)
    recipe = _build(cls, data, "", where)
    if hasattr(recipe, "validate"):
        recipe.validate(where)
    return recipe


def merge_sections(base: dict, preset: dict) -> dict:
    """`preset` over `base`, section by section: a mapping merges key by key, anything else (a value,
    a list) replaces."""
    out = dict(base)
    for k, v in preset.items():
        out[k] = merge_sections(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_recipe_tree(path: Path, _seen: tuple = ()) -> dict:
    """The recipe file as a mapping, with its `base:` chain resolved: `base: other.yaml` (relative to the
    file) is read first and this file's sections are merged over it, so a data-set preset states only
    what differs from the shared recipe (EDM2's presets)."""
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
    if "base" in data:
        base = data.pop("base")
        if not isinstance(base, str) or not base:
            raise RecipeError(f"{path}: key 'base' expects the path of a recipe file, got {base!r}")
        base_path = (path.parent / base).resolve()
        if base_path in _seen:
            raise RecipeError(f"{path}: key 'base': {base} is already in the chain of bases (a cycle)")
        data = merge_sections(read_recipe_tree(base_path, _seen + (path.resolve(),)), data)
    return data


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()):
    path = Path(path)
    data = read_recipe_tree(path)
    for o in overrides:
        apply_override(data, o)
    return recipe_from_dict(data, str(path))


def recipe_to_dict(recipe) -> dict:
    return dataclasses.asdict(recipe)


def dump_recipe(recipe, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False))
