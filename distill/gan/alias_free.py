"""Signal processing of the alias-free generator (Karras et al. 2021, "Alias-Free Generative Adversarial
Networks"): Kaiser-windowed sinc low-pass filters, upsample-filter-downsample (`upfirdn2d`) with separable
1-D filters on torch's grouped convolutions, and the filtered non-linearity of Sec. 3.2:

    x -> + bias -> upsample `up`x (zero insertion, low-pass fu) -> leaky ReLU -> low-pass fd, keep every `down`-th

Frequencies are in cycles per unit length and a feature map of sampling rate s holds s samples per unit,
so s / 2 is its Nyquist frequency (the output image spans one unit: sampling rate = resolution).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from .layers import LRELU_GAIN, LRELU_SLOPE


def kaiser_attenuation(numtaps: int, width: float, fs: float) -> float:
    """The stopband attenuation (dB) Kaiser's formula (Kaiser 1974) promises for a windowed-sinc filter of
    `numtaps` taps and transition band `width` at sampling rate `fs`: 2.285 (N - 1) pi (width / (fs / 2)) + 7.95."""
    return 2.285 * (numtaps - 1) * math.pi * (width / (fs / 2)) + 7.95


def kaiser_beta(attenuation: float) -> float:
    """The Kaiser window's shape parameter for a stopband attenuation in dB (Kaiser 1974)."""
    a = attenuation
    if a > 50:
        return 0.1102 * (a - 8.7)
    if a > 21:
        return 0.5842 * (a - 21) ** 0.4 + 0.07886 * (a - 21)
    return 0.0


def lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float) -> Optional[torch.Tensor]:
    """A linear-phase low-pass FIR filter: the ideal filter's sinc, h[n] = (2 f_c / fs) sinc(2 f_c / fs (n - (N-1)/2)),
    times a Kaiser window sized for the transition band `width` (centred on the cutoff), normalised to gain 1 at
    DC. (numtaps,) float32, or None for a single tap (no filtering)."""
    if numtaps <= 1:
        return None
    n = torch.arange(numtaps, dtype=torch.float64) - (numtaps - 1) / 2
    h = (2 * cutoff / fs) * torch.sinc(2 * cutoff / fs * n)
    beta = kaiser_beta(kaiser_attenuation(numtaps, width, fs))
    h = h * torch.kaiser_window(numtaps, periodic=False, beta=beta, dtype=torch.float64)
    return (h / h.sum()).float()


def frequency_response(f: torch.Tensor, fs: float, freqs: torch.Tensor) -> torch.Tensor:
    """|H(freq)| of a 1-D FIR filter at sampling rate fs: |sum_n f[n] exp(-2 pi i freq n / fs)|. (F,) -> (F,)"""
    n = torch.arange(f.numel(), dtype=torch.float64)
    phase = -2 * math.pi * freqs.double()[:, None] * n[None, :] / fs  # (F, N)
    fd = f.double()
    return torch.sqrt((torch.cos(phase) @ fd) ** 2 + (torch.sin(phase) @ fd) ** 2)


def fir_matrix(n: int, f: Optional[torch.Tensor], up: int = 1, down: int = 1, pad: Sequence[int] = (0, 0),
               gain: float = 1.0) -> torch.Tensor:
    """The 1-D upfirdn as a matrix: upsample n samples by zero insertion (`up`), pad (lo, hi; negative crops),
    convolve ('valid') with the filter f times `gain`, keep every `down`-th sample. -> (n', n),
    n' = (n up + lo + hi - taps) // down + 1. On CPU a dense (n', n) product is much faster than a grouped
    convolution over the zero-inserted signal, at the canvas sizes of small generators."""
    taps = 1 if f is None else f.numel()
    fw = torch.ones(1) if f is None else f.double()
    lo, hi = pad
    n_out = (n * up + lo + hi - taps) // down + 1
    k = taps - 1 - (torch.arange(n)[None, :] * up + lo - torch.arange(n_out)[:, None] * down)  # filter index
    inside = (k >= 0) & (k < taps)
    m = torch.where(inside, fw[k.clamp(0, taps - 1)], torch.zeros((), dtype=fw.dtype)) * gain
    return m.float()


def upfirdn2d(x: torch.Tensor, f: Optional[torch.Tensor], up: int = 1, down: int = 1,
              padding: Sequence[int] = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """Upsample by zero insertion (`up`), pad (left, right, top, bottom; negative crops), filter with the separable
    filter f (x) f times `gain`, keep every `down`-th sample. (B, C, H, W) -> (B, C, H', W'),
    H' = (H up + top + bottom - taps) // down + 1."""
    g = math.sqrt(gain)  # split between the two axes
    mw = fir_matrix(x.shape[3], f, up, down, padding[:2], g).to(x)
    mh = fir_matrix(x.shape[2], f, up, down, padding[2:], g).to(x)
    return separable(x, mh, mw)


def separable(x: torch.Tensor, mh: torch.Tensor, mw: torch.Tensor) -> torch.Tensor:
    """mh x mw^T on every channel: (B, C, H, W), (H', H), (W', W) -> (B, C, H', W')."""
    return torch.matmul(torch.matmul(mh, x), mw.t())


def filtered_lrelu(x: torch.Tensor, bias: torch.Tensor, up_matrix: torch.Tensor, down_matrix: torch.Tensor,
                   clamp: Optional[float] = None) -> torch.Tensor:
    """The filtered non-linearity (Sec. 3.2) on square canvases: bias, upsampling through the low-pass up_matrix
    (fir_matrix of the up filter, gain `up` per axis so the signal keeps its level), leaky ReLU x sqrt(2) at the
    higher rate, optional clamp, the low-pass + decimation down_matrix. (B, C, S, S) -> (B, C, S', S')."""
    x = separable(x + bias[None, :, None, None], up_matrix, up_matrix)
    x = F.leaky_relu(x, LRELU_SLOPE) * LRELU_GAIN
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return separable(x, down_matrix, down_matrix)
