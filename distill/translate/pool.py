"""History of generated images (CycleGAN Sec. 4; Shrivastava et al. 2017): the discriminators
see a mix of the latest fakes and older ones, which reduces model oscillation.

Same rule as the reference ImagePool: until the pool holds `pool_size` images every fake is
stored and returned; afterwards each fake is, with probability 1/2, swapped with a random stored
one (the old one is returned, the new one stored), else returned as is. Randomness comes from a
caller-supplied torch.Generator, and the pool is a state_dict()-able object, so resuming a run
replays it exactly.
"""

from __future__ import annotations

from typing import Optional

import torch


class ImagePool:
    def __init__(self, pool_size: int = 50):
        self.pool_size = pool_size
        self.images: Optional[torch.Tensor] = None  # (n, C, H, W), n <= pool_size
        self.num_imgs = 0

    @torch.no_grad()
    def query(self, images: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """images: (B, C, H, W) fakes -> (B, C, H, W) to show the discriminator (detached)."""
        images = images.detach()
        if self.pool_size == 0:
            return images
        out = []
        for image in images:
            if self.num_imgs < self.pool_size:
                stored = image.unsqueeze(0).clone()
                self.images = stored if self.images is None else torch.cat([self.images, stored])
                self.num_imgs += 1
                out.append(image)
            elif torch.rand((), generator=generator).item() > 0.5:
                k = int(torch.randint(0, self.pool_size, (), generator=generator))
                out.append(self.images[k].clone())
                self.images[k] = image
            else:
                out.append(image)
        return torch.stack(out)

    def state_dict(self) -> dict:
        return {"pool_size": self.pool_size, "num_imgs": self.num_imgs,
                "images": self.images.cpu() if self.images is not None else torch.empty(0)}

    def load_state_dict(self, state: dict) -> None:
        self.pool_size = int(state["pool_size"])
        self.num_imgs = int(state["num_imgs"])
        self.images = state["images"] if self.num_imgs > 0 else None
