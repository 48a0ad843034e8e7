"""Translation equivariance of a style-based generator: EQ-T and EQ-T_frac of the StyleGAN3 paper
(Karras et al. 2021, Sec. 2 and App. E), a PSNR in dB between

    the generator's output for an input translated by t      and      its untranslated output translated by t,

over the pixels where the translated reference is defined (the rest is masked out), for images in [-1, 1]
(peak-to-peak 2): PSNR = 20 log10(2) - 10 log10(MSE). Higher is more equivariant; the paper's StyleGAN2 scores
about 15-20 dB, StyleGAN3-T above 50 dB.

The translation t of the input, per kind:
  stylegan3-t  through the Fourier features' phases (`synthesis(..., translate=t)`), as the paper does;
  stylegan2    the learned constant shifted by t r0 / R of its own pixels in the Fourier domain (a band-limited,
               circular shift), noise off (a fixed noise map is not translated with the input).
The reference: an integer roll (EQ-T) or a Lanczos-3 windowed-sinc resampling (EQ-T_frac), each with its mask.
Integer shifts are rounded to whole output pixels; fractional ones are drawn uniformly in
[-translate_max, translate_max] x R pixels per axis (the paper: translate_max = 0.125).
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch

from ..engine.randomness import rng
from ..errors import DistillError
from .architectures import StyleBased, model_device

PEAK = 2.0  # images in [-1, 1]


def lanczos_matrix(n: int, shift: float, a: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """The 1-D resampling y[i] = sum_k x[k] L(i - shift - k), L(u) = sinc(u) sinc(u / a) for |u| < a (rows
    normalised to sum 1), and the rows whose taps all lie inside [0, n). -> (n, n) matrix, (n,) bool mask"""
    i = torch.arange(n, dtype=torch.float64)
    u = i[:, None] - shift - i[None, :]
    m = torch.sinc(u) * torch.sinc(u / a) * (u.abs() < a)
    m = m / m.sum(dim=1, keepdim=True).clamp_min(1e-12)
    valid = (i - shift - a > -1) & (i - shift + a <= n)
    if float(shift).is_integer():  # a pure shift: one tap per row
        valid = (i - shift >= 0) & (i - shift <= n - 1)
    return m.float(), valid


def translate_image(x: torch.Tensor, tx: float, ty: float) -> tuple[torch.Tensor, torch.Tensor]:
    """x (B, C, H, W) moved by (tx, ty) pixels (right, down); whole pixels exactly, fractions by Lanczos-3.
    -> (moved, mask (1, 1, H, W))"""
    mx, vx = lanczos_matrix(x.shape[-1], tx)
    my, vy = lanczos_matrix(x.shape[-2], ty)
    y = torch.einsum("ih,bchw,jw->bcij", my.to(x), x, mx.to(x))
    return y, (vy[:, None] & vx[None, :]).to(x)[None, None]


def fourier_shift(x: torch.Tensor, tx: float, ty: float) -> torch.Tensor:
    """A periodic, band-limited translation of x (..., H, W) by (tx, ty) of its own pixels."""
    H, W = x.shape[-2:]
    ky = torch.fft.fftfreq(H, device=x.device, dtype=torch.float64)[:, None]
    kx = torch.fft.fftfreq(W, device=x.device, dtype=torch.float64)[None, :]
    phase = torch.exp(-2j * math.pi * (kx * tx + ky * ty)).to(torch.complex64)
    return torch.fft.ifft2(torch.fft.fft2(x.float()) * phase).real.to(x.dtype)


@contextmanager
def _shifted_constant(G, tx: float, ty: float):
    """StyleGAN2: the first layer reads the learned constant shifted by (tx, ty) output pixels."""
    scale = G.levels[0] / G.config.resolution
    hook = G.layers[0].register_forward_pre_hook(
        lambda m, args: (fourier_shift(args[0], tx * scale, ty * scale), *args[1:]))
    try:
        yield
    finally:
        hook.remove()


def render_translated(G: StyleBased, ws: torch.Tensor, tx: float = 0.0, ty: float = 0.0) -> torch.Tensor:
    """The generator's images for styles ws with its input translated by (tx, ty) output pixels."""
    if hasattr(G, "input") and hasattr(G.input, "freqs"):  # stylegan3-t: the Fourier features' phases
        return G.synthesis(ws, translate=torch.tensor([tx, ty]))
    if hasattr(G, "const"):
        with _shifted_constant(G, tx, ty):
            return G.synthesis(ws, noise="none")
    raise DistillError(f"{type(G).__name__}: no translatable input (stylegan2 or stylegan3-t generators)")


@torch.no_grad()
def eqt_psnr(G: StyleBased, num_samples: int = 64, fractional: bool = True, translate_max: float = 0.125,
             batch_size: int = 32, seed: int = 0, normalize: bool = False) -> float:
    """EQ-T (`fractional` False: whole-pixel shifts) or EQ-T_frac in dB over `num_samples` latents (classes in
    turn), one random shift per batch. `normalize`: both images are first divided by the untranslated output's
    standard deviation and multiplied by 0.5 (a data image's spread in [-1, 1]), so generators whose outputs have
    different scales (e.g. at initialisation) are compared on the same footing."""
    g = rng(seed, "eq-t")
    R, dev = G.config.resolution, model_device(G)
    k = G.config.num_classes
    sq, cnt = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)
    for start in range(0, num_samples, batch_size):
        b = min(batch_size, num_samples - start)
        z = torch.randn(b, G.config.z_dim, generator=g).to(dev)
        y = (torch.arange(start, start + b) % k).to(dev) if k else None
        t = (torch.rand(2, generator=g) * 2 - 1) * translate_max * R
        if not fractional:
            t = t.round()
        tx, ty = float(t[0]), float(t[1])
        ws = G.mapping(z, y)
        orig = render_translated(G, ws)
        img = render_translated(G, ws, tx, ty)
        ref, mask = translate_image(orig, tx, ty)
        if normalize:
            s = 0.5 / orig.float().std().clamp_min(1e-12)
            ref, img = ref * s, img * s
        sq += ((ref - img).double().square() * mask).sum()
        cnt += mask.double().expand_as(ref).sum()
    mse = float(sq / cnt.clamp_min(1))
    return 20 * math.log10(PEAK) - 10 * math.log10(max(mse, 1e-20))
