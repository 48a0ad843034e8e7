"""The models a demo page runs, the caps on a request, and one timed call per model.

Loading goes through the latency bench's loaders (`distill.bench.models.load_pipeline`, `load_gan`:
the device, fp32, eval mode) and timing through its timer (`distill.bench.timing.make_timer`:
`time.perf_counter` around the call on CPU, CUDA events after a full synchronisation on CUDA), so
a time on the page is what `distill bench latency` measures for the same call. Each model is called
once at load (the bench's warm-up: lazy initialisation is not charged to the first request); the
running p50 is over the requests since the page started (`percentile`, the bench's statistic).

A request past the caps (`LIMITS`, the largest request) raises `RequestError`, which the page shows as a message.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch

from ..bench.config import BenchConfig
from ..bench.models import load_gan, load_pipeline
from ..bench.timing import make_timer, percentile
from ..errors import DistillError

ORDER = ("teacher", "student", "gan")  # left to right on the page
HISTORY = 500  # requests per model kept for the running p50
VIEW_PX = 224  # small images are shown upscaled to about this height


class RequestError(ValueError):
    """A value the page refuses (shown in the page; the server goes on)."""


@dataclass(frozen=True)
class Request:
    label: int = 0
    seed: int = 0
    batch: int = 1
    teacher_steps: int = 25
    student_steps: int = 1
    guidance: float = 1.0  # the teacher's classifier-free guidance (the student has it built in)
    truncation: float = 1.0  # the GAN's psi


# the largest request a page accepts (the class: below the models' number of classes); one runs at a time
LIMITS = Request(label=0, seed=2**31 - 1, batch=16, teacher_steps=100, student_steps=4, guidance=20.0, truncation=2.0)


@dataclass
class Shot:
    """One model's answer to a request: a row of `batch` images, the request's time, the running p50."""

    name: str
    image: np.ndarray  # (H, W, 3) uint8, the batch side by side
    seconds: float
    p50_s: float
    n: int  # requests behind the p50

    def caption(self) -> str:
        return f"{self.seconds * 1e3:.1f} ms this request; p50 {self.p50_s * 1e3:.1f} ms over {self.n}"


def _integer(name: str, value, low: int, high: int) -> int:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise RequestError(f"{name}: expected an integer, got {value!r}") from None
    if not v.is_integer() or not low <= v <= high:
        raise RequestError(f"{name}: must be an integer in [{low}, {high}], got {value!r}")
    return int(v)


def _number(name: str, value, low: float, high: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise RequestError(f"{name}: expected a number, got {value!r}") from None
    if not low <= v <= high:  # NaN fails too
        raise RequestError(f"{name}: must lie in [{low:g}, {high:g}], got {value!r}")
    return v


def row_image(x: torch.Tensor, view: int = VIEW_PX) -> np.ndarray:
    """(B, C, H, W) in [0, 1] -> (sH, B*sW + 2(B-1), 3) uint8: the images side by side on a white gap,
    nearest-neighbour upscaled by s = view // H (at least 1) so that small images can be seen."""
    x = x.detach().float().cpu().clamp(0, 1)
    if view // x.shape[-2] > 1:
        x = torch.nn.functional.interpolate(x, scale_factor=view // x.shape[-2], mode="nearest")
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    gap = torch.ones(3, x.shape[2], 2)
    parts = []
    for i, im in enumerate(x):
        parts += ([gap] if i else []) + [im]
    return (torch.cat(parts, dim=2).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


@dataclass
class Lineup:
    """The teacher, student and GAN a page runs (any of them may be absent), on one device."""

    device: str = "cpu"
    models: dict[str, Any] = field(default_factory=dict)  # ORDER name -> pipeline or generator
    paths: dict[str, str] = field(default_factory=dict)
    limits: Request = LIMITS
    history: dict[str, deque] = field(default_factory=dict)

    def __post_init__(self):
        self.timer = make_timer(self.device)
        self.history = {name: deque(maxlen=HISTORY) for name in self.models}

    @property
    def names(self) -> list[str]:
        return [n for n in ORDER if n in self.models]

    @property
    def num_classes(self) -> Optional[int]:
        for name in self.names:
            m = self.models[name]
            k = m.num_classes if name != "gan" else m.config.num_classes
            if k:
                return k
        return None

    @property
    def student_max_steps(self) -> int:
        """The most steps the student's scheduler samples in (an LCMScheduler exported with K timesteps: K)."""
        student = self.models.get("student")
        if student is None:
            return self.limits.student_steps
        best = 1
        for s in range(1, self.limits.student_steps + 1):
            sched = type(student.scheduler).from_config(student.scheduler.config)
            try:
                sched.set_timesteps(s)
            except ValueError:
                break
            best = s
        return best

    def check(self, req: Request) -> Request:
        """`req` with every field checked against the caps and the models; RequestError otherwise."""
        lim, k = self.limits, self.num_classes
        return Request(
            label=_integer("class", req.label, 0, k - 1) if k else 0,
            seed=_integer("seed", req.seed, 0, lim.seed),
            batch=_integer("images", req.batch, 1, lim.batch),
            teacher_steps=_integer("teacher steps", req.teacher_steps, 1, lim.teacher_steps),
            student_steps=_integer("student steps", req.student_steps, 1, self.student_max_steps),
            guidance=_number("guidance", req.guidance, 0.0, lim.guidance),
            truncation=_number("truncation", req.truncation, 0.0, lim.truncation))

    def calls(self, req: Request) -> dict[str, Callable[[], torch.Tensor]]:
        """Per model, one call answering `req`: (batch, C, H, W) in [0, 1], seeded by req.seed."""
        out = {}
        labels = torch.full((req.batch,), req.label, dtype=torch.long, device=self.device) if self.num_classes else None

        def pipeline_call(pipe, steps: int, guidance: float):
            def call():
                g = torch.Generator(self.device).manual_seed(req.seed)
                return pipe(class_labels=labels, batch_size=req.batch, num_inference_steps=steps,
                            guidance_scale=guidance, generator=g, output_type="pt").images
            return call

        if "teacher" in self.models:
            out["teacher"] = pipeline_call(self.models["teacher"], req.teacher_steps, req.guidance)
        if "student" in self.models:
            out["student"] = pipeline_call(self.models["student"], req.student_steps, 1.0)
        if "gan" in self.models:
            G = self.models["gan"]

            def gan_call():
                g = torch.Generator(self.device).manual_seed(req.seed)
                z = torch.randn(req.batch, G.config.z_dim, generator=g, device=self.device)
                return G(z, labels if G.config.num_classes else None, truncation=req.truncation).clamp(-1, 1).add(1).div(2)
            out["gan"] = gan_call
        return out

    def run(self, req: Request, names: Optional[list[str]] = None) -> list[Shot]:
        """Each model's call for the checked `req`, timed; the time joins the model's running p50."""
        req = self.check(req)
        shots = []
        with torch.no_grad():
            for name, call in self.calls(req).items():
                if names is not None and name not in names:
                    continue
                images, seconds = self.timer.measure(call)
                hist = self.history[name]
                hist.append(seconds)
                shots.append(Shot(name, row_image(images), seconds, percentile(list(hist), 50), len(hist)))
        return shots

    def warm_up(self) -> None:
        """One untimed call per model at the default request (the bench's warm-up)."""
        req = Request(teacher_steps=2, student_steps=1)
        with torch.no_grad():
            for call in self.calls(self.check(req)).values():
                self.timer.measure(call)


def load_lineup(student: Optional[str], teacher: Optional[str], gan: Optional[str], device: str = "cpu") -> Lineup:
    """Load the given folders (already classified: see distill.demo.folders) onto `device`."""
    if not (student or teacher or gan):
        raise DistillError("nothing to show: give a student pipeline, --teacher and/or --gan")
    cfg = BenchConfig(device=device, dtype="fp32")
    models, paths = {}, {}
    for name, path in (("teacher", teacher), ("student", student)):
        if path:
            models[name], paths[name] = load_pipeline(str(path), cfg), str(path)
    if gan:
        models["gan"], paths["gan"] = load_gan(str(gan), cfg), str(gan)
    classes = {n: (m.num_classes if n != "gan" else m.config.num_classes) for n, m in models.items()}
    if len({k for k in classes.values()}) > 1:
        raise DistillError("the models disagree on the number of classes: "
                           + ", ".join(f"{n} {k}" for n, k in classes.items()))
    return Lineup(device=device, models=models, paths=paths)
