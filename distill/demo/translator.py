"""A pix2pix / CycleGAN generator behind the upload-and-translate page: the run's export (or checkpoint) loaded as
`distill translate` loads it (`distill.translate.infer.load_generator`), an uploaded image resized
to the training crop size, translated in eval mode and timed with the latency bench's timer."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..bench.timing import make_timer, percentile
from .models import HISTORY, RequestError, Shot, row_image

MAX_PIXELS = 4096 * 4096  # an upload larger than this is refused, not resized


@dataclass
class Translator:
    generator: Any  # nn.Module with in_channels and crop_size set by load_generator
    path: str
    device: str = "cpu"
    history: deque = field(default_factory=lambda: deque(maxlen=HISTORY))

    def __post_init__(self):
        self.timer = make_timer(self.device)
        self.generator = self.generator.to(self.device).eval()

    def translate(self, image) -> Shot:
        """image: (H, W, C) or (H, W) uint8 from the page -> the translation at the crop size, timed."""
        from PIL import Image

        from ..translate.data import _pil_to_tensor, _resize

        if image is None:
            raise RequestError("upload an image first")
        arr = np.asarray(image)
        if arr.ndim not in (2, 3) or arr.shape[0] * arr.shape[1] > MAX_PIXELS:
            raise RequestError(f"image of shape {tuple(arr.shape)}: expected (H, W[, C]) with at most {MAX_PIXELS} pixels")
        G = self.generator
        x = _pil_to_tensor(Image.fromarray(arr.astype(np.uint8)), G.in_channels)[None]  # (1, C, H, W) uint8
        x = (_resize(x, G.crop_size).float() / 127.5 - 1).to(self.device)

        def call():
            with torch.no_grad():
                return G(x)

        y, seconds = self.timer.measure(call)
        self.history.append(seconds)
        return Shot("translator", row_image((y.clamp(-1, 1) + 1) / 2), seconds, percentile(list(self.history), 50),
                    len(self.history))

    def warm_up(self) -> None:
        G = self.generator
        x = torch.zeros(1, G.in_channels, G.crop_size, G.crop_size, device=self.device)
        with torch.no_grad():
            self.timer.measure(lambda: G(x))


def load_translator(path: str, device: str = "cpu", reverse: bool = False) -> Translator:
    from ..translate.infer import load_generator

    G, _ = load_generator(path, reverse=reverse)
    return Translator(generator=G, path=str(path), device=device)
