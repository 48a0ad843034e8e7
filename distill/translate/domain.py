"""The independent domain classifier for unpaired evaluation (CycleGAN): a small CNN trained on
real A (label 0) vs real B (label 1) training images. It is never used by a training loss; it
only scores translations ("is G_A(a) classified as B?") and gives the features for KID/FID.

It reuses the project's evaluation-classifier architecture and file format
(`distill.eval.classifier`), so `load_classifier("horse2zebra")` finds the shipped weights
`distill/assets/classifier-horse2zebra.safetensors` (test accuracy in its metadata).
Reproduce with `python scripts/train_domain_classifier.py` (see docs/translate.md).
"""

from __future__ import annotations

import torch

from ..eval.classifier import ConvClassifier, accuracy, load_classifier, train_classifier


def domain_labels(n_a: int, n_b: int) -> torch.Tensor:
    """(n_a + n_b,) int64: 0 for domain A, 1 for domain B."""
    return torch.cat([torch.zeros(n_a, dtype=torch.long), torch.ones(n_b, dtype=torch.long)])


def train_domain_classifier(a: torch.Tensor, b: torch.Tensor, epochs: int = 4, seed: int = 0,
                            input_size: int = 32) -> ConvClassifier:
    """a: (N_A, C, H, W) uint8, b: (N_B, C, H, W) uint8 -> a 2-way classifier."""
    return train_classifier(torch.cat([a, b]), domain_labels(len(a), len(b)), num_classes=2, epochs=epochs,
                            seed=seed, input_size=input_size)


def domain_accuracy(model: ConvClassifier, a: torch.Tensor, b: torch.Tensor) -> float:
    return accuracy(model, torch.cat([a, b]), domain_labels(len(a), len(b)))


@torch.no_grad()
def target_rate(model: ConvClassifier, images: torch.Tensor, target: int, batch: int = 256) -> float:
    """Fraction of `images` ((N, C, H, W) float in [-1, 1]) classified as domain `target`."""
    model.eval()
    hits = 0
    for i in range(0, len(images), batch):
        hits += (model(images[i:i + batch].float()).argmax(1) == target).sum().item()
    return hits / max(1, len(images))


def load_domain_classifier(spec: str) -> ConvClassifier:
    return load_classifier(spec)
