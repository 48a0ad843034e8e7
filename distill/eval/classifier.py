"""The evaluation classifier: a small CNN trained on a data set's training split, used only for
evaluation (FID/KID features, class counts). No training loss in the project may use it.

Weights ship as safetensors in `distill/assets/classifier-<name>.safetensors` with the
architecture in the file's metadata; `distill classifier train --data SOURCE --channels C
--resolution R --out PATH.safetensors` trains one for any data set (the shipped ones included), and
`eval.features: classifier:<PATH>` loads it (channels and classes come from the file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ..errors import DistillError

ASSETS = Path(__file__).resolve().parent.parent / "assets"


class ConvClassifier(nn.Module):
    """(B, C, H, W) in [-1, 1] -> logits (B, K); `features` gives the (B, 128) penultimate layer.
    Inputs are resized to `input_size` so one network serves 16, 28 or 32 pixel samples."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int = 28, width: int = 32,
                 feature_dim: int = 128):
        super().__init__()
        self.config = dict(in_channels=in_channels, num_classes=num_classes, input_size=input_size, width=width,
                           feature_dim=feature_dim)
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(3), nn.Flatten(),
            nn.Linear(2 * w * 9, feature_dim), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(feature_dim, num_classes))
        self.num_features = feature_dim

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config["in_channels"]
        if x.shape[1] != c:
            raise DistillError(f"evaluation classifier expects {c}-channel images, got {x.shape[1]} "
                               f"(train one for these images: distill classifier train --channels {x.shape[1]} ...)")
        s = self.config["input_size"]
        if x.shape[-1] != s or x.shape[-2] != s:
            x = F.interpolate(x.float(), size=(s, s), mode="bilinear", antialias=True, align_corners=False)
        return x.float()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self._prep(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def save_classifier(model: ConvClassifier, path, info: dict) -> None:
    meta = {"config": json.dumps(model.config), "info": json.dumps(info)}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata=meta)


def classifier_path(spec: str) -> Path:
    """`mnist` / `digits` -> the shipped asset; a .safetensors name or any path with a folder part
    (`runs/cls.safetensors`, `./cls`) is a file path."""
    p = Path(spec).expanduser()
    if p.suffix == ".safetensors" or len(p.parts) > 1 or p.is_file():
        return p
    return ASSETS / f"classifier-{spec}.safetensors"


def _config_from_tensors(state: dict, info: dict) -> dict:
    """The architecture from the weights' shapes (files without a config in their metadata)."""
    try:
        conv, lin, head = state["body.0.weight"], state["body.16.weight"], state["head.1.weight"]
    except KeyError as e:
        raise DistillError(f"not an evaluation classifier (no {e.args[0]} tensor)") from None
    return dict(in_channels=conv.shape[1], num_classes=head.shape[0], width=conv.shape[0],
                feature_dim=lin.shape[0], input_size=int(info.get("resolution", 28)))


def load_classifier(spec: str) -> ConvClassifier:
    """A shipped name (`digits`, `mnist`, `horse2zebra`) or a .safetensors path written by
    `distill classifier train`; channels, classes and input size come from the file."""
    path = classifier_path(spec)
    if not path.is_file():
        raise DistillError(f"{path}: evaluation classifier not found (train one with `distill classifier train`)")
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise DistillError(f"{path}: not a safetensors file ({str(e).splitlines()[0] if str(e) else e.__class__.__name__})") from None
    info = json.loads(meta.get("info", "{}"))
    try:
        config = json.loads(meta["config"]) if "config" in meta else _config_from_tensors(state, info)
    except DistillError as e:
        raise DistillError(f"{path}: {e}") from None
    model = ConvClassifier(**config)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise DistillError(f"{path}: weights do not match the classifier config ({str(e).splitlines()[0]})") from None
    model.info = info
    return model.eval()


@torch.no_grad()
def accuracy(model: ConvClassifier, images: torch.Tensor, labels: torch.Tensor, batch: int = 1000) -> float:
    """images: (N, C, H, W) uint8; labels (N,)."""
    model.eval()
    correct = 0
    for i in range(0, len(images), batch):
        x = images[i:i + batch].float() / 127.5 - 1
        correct += (model(x).argmax(1) == labels[i:i + batch]).sum().item()
    return correct / len(images)


def train_classifier(train_images: torch.Tensor, train_labels: torch.Tensor, num_classes: int, epochs: int = 4,
                     batch: int = 128, lr: float = 2e-3, seed: int = 0, input_size: int = 28,
                     augment: bool = True, steps: Optional[int] = None, progress: bool = True) -> ConvClassifier:
    """Adam + one-cycle LR, random translations of up to 2 pixels. images: (N, C, H, W) uint8.
    `steps`: optimizer steps in all (the last epoch cut short), instead of `epochs` whole epochs."""
    from tqdm.auto import tqdm

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = ConvClassifier(train_images.shape[1], num_classes, input_size)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = len(train_images)
    per_epoch = (n + batch - 1) // batch
    total = steps if steps is not None else epochs * per_epoch
    epochs = (total + per_epoch - 1) // per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total)
    bar = tqdm(total=total, desc="classifier", disable=not progress)
    done = 0
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(n, generator=g).split(batch):
            if done == total:
                break
            done += 1
            x = train_images[idx].float() / 127.5 - 1
            if augment:  # random shift by up to 2 pixels (pad + crop)
                dx, dy = torch.randint(-2, 3, (2,), generator=g).tolist()
                x = torch.roll(F.pad(x, (2, 2, 2, 2), value=-1.0), shifts=(dy, dx), dims=(2, 3))[..., 2:-2, 2:-2]
            loss = F.cross_entropy(model(x), train_labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    return model.eval()
