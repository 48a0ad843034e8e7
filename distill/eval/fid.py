"""FID and KID through torchmetrics with a pluggable feature extractor.

Feature specs (`EvalConfig.features`):
  classifier:<name|path.safetensors>  the project's evaluation classifier (128-d penultimate layer)
  inception                           torchmetrics' InceptionV3 (2048-d; needs torch-fidelity, the extra
                                      `distill[inception]`, and its weights, downloaded once or cached)
Images enter as float (B, C, H, W) in [-1, 1].
"""

from __future__ import annotations

import warnings
from typing import Optional

import torch
import torch.nn as nn

from ..errors import DistillError
from .classifier import load_classifier


class ClassifierFeatures(nn.Module):
    def __init__(self, classifier):
        super().__init__()
        self.classifier = classifier.eval()
        self.num_features = classifier.num_features

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, D)
        return self.classifier.features(x)


class InceptionFeatures(nn.Module):
    """[-1, 1] images -> torchmetrics' InceptionV3 pool features (grey images repeated to RGB)."""

    def __init__(self):
        super().__init__()
        try:
            from torchmetrics.image.fid import NoTrainInceptionV3

            self.net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"])
        except Exception as e:  # missing torch-fidelity or weights: say so on one line
            raise DistillError(f"inception features unavailable ({str(e).splitlines()[0] if str(e) else e.__class__.__name__}); "
                               "install torch-fidelity (pip install 'distill[inception]') or use "
                               "features=classifier:<name>") from None
        self.num_features = 2048

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        u8 = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return self.net(u8).reshape(x.shape[0], -1)


def _classifier_features(arg: str):
    return ClassifierFeatures(load_classifier(arg))


FEATURES = {"classifier": _classifier_features, "inception": lambda arg: InceptionFeatures()}


def feature_extractor(spec: str) -> nn.Module:
    kind, _, arg = spec.partition(":")
    if kind not in FEATURES:
        raise DistillError(f"eval.features: unknown feature extractor '{spec}' (choose from {', '.join(FEATURES)})")
    return FEATURES[kind](arg)


@torch.no_grad()
def extract(extractor: nn.Module, images: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """images: (N, C, H, W) float in [-1, 1] or uint8 -> (N, D) float64 features."""
    out = []
    for i in range(0, len(images), batch):
        x = images[i:i + batch]
        if x.dtype == torch.uint8:
            x = x.float() / 127.5 - 1
        out.append(extractor(x).double())
    return torch.cat(out)


class _Precomputed(nn.Module):
    """Identity 'network' so torchmetrics consumes features we already extracted."""

    def __init__(self, dim: int):
        super().__init__()
        self.num_features = dim

    def forward(self, f):
        return f


def fid_kid(real_feats: torch.Tensor, fake_feats: torch.Tensor, kid_subset: int = 1000,
            kid_subsets: int = 50) -> dict:
    """FID (torchmetrics) and KID (polynomial kernel MMD, mean and std over subsets)."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    d = real_feats.shape[1]
    fid = FrechetInceptionDistance(feature=_Precomputed(d), reset_real_features=False).double()
    fid.update(real_feats, real=True)
    fid.update(fake_feats, real=False)
    n = min(len(real_feats), len(fake_feats))
    with warnings.catch_warnings():
        # torchmetrics warns on every construction that KID keeps all features in memory; here they are the
        # already extracted features of one evaluation (n x d floats, about 1 MB for 2000 x 128), held anyway
        warnings.filterwarnings("ignore", message="Metric `Kernel Inception Distance` will save all extracted features",
                                category=UserWarning)
        kid = KernelInceptionDistance(feature=_Precomputed(d), subsets=kid_subsets, subset_size=min(kid_subset, n))
    kid.update(real_feats.float(), real=True)
    kid.update(fake_feats.float(), real=False)
    with torch.random.fork_rng(devices=[]):  # torchmetrics draws the KID subsets from the global RNG: fixed here,
        torch.manual_seed(0)  # so the same samples always score the same KID and the caller's RNG is untouched
        kid_mean, kid_std = kid.compute()
    return {"fid": float(fid.compute()), "kid": float(kid_mean), "kid_std": float(kid_std)}


def pairwise_distance(feats: torch.Tensor, labels: Optional[torch.Tensor] = None, max_per_group: int = 500) -> float:
    """Mean pairwise L2 distance between features of samples of the same class (within-class
    diversity; a collapsed generator scores near 0). Unlabelled: over the whole set."""
    groups = [feats] if labels is None else [feats[labels == c] for c in labels.unique()]
    vals = []
    for f in groups:
        f = f[:max_per_group]
        if len(f) > 1:
            d = torch.cdist(f, f, compute_mode="donot_use_mm_for_euclid_dist")
            vals.append(d.sum() / (len(f) * (len(f) - 1)))
    return float(torch.stack(vals).mean()) if vals else float("nan")
