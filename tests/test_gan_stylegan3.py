"""The StyleGAN3-T generator (distill.gan.stylegan3): its low-pass filters, the paper's layer schedule, its
translation equivariance (EQ-T) against StyleGAN2's, class conditioning, the style-based interface, export and
reload, and an end-to-end run that resumes exactly."""

import math

import numpy as np
import pytest
import torch

from distill.errors import DistillError
from distill.gan.alias_free import frequency_response, kaiser_attenuation, lowpass_filter, upfirdn2d
from distill.gan.architectures import StyleBased, load_generator
from distill.gan.equivariance import eqt_psnr, translate_image
from distill.gan.generator import StyleGAN2Generator
from distill.gan.stylegan3 import StyleGAN3Generator, layer_schedule

from .gan_kind_checks import check_resume_export_sample, tiny_kind_recipe


def tiny(**kw) -> StyleGAN3Generator:
    torch.manual_seed(0)
    cfg = dict(resolution=16, channels=1, num_classes=3, z_dim=8, w_dim=8, width=4, max_width=16, num_layers=4,
               margin_size=2)
    return StyleGAN3Generator(**{**cfg, **kw}).eval()


def attenuation_db(f: torch.Tensor, stopband: float, fs: float) -> float:
    """-20 log10 of the largest gain on [stopband, fs / 2]."""
    worst = frequency_response(f, fs, torch.linspace(stopband, fs / 2, 2001)).max()
    return -20 * math.log10(float(worst))


def test_lowpass_filters_pass_dc_and_stop_above_the_stopband():
    """Every filter of the CIFAR-sized generator: gain 1 at DC, and above its stopband (cutoff + half-width) the
    attenuation Kaiser's formula promises for its taps and transition band (to 6 dB), a flat passband below
    cutoff - half-width; an unwindowed sinc of the same taps, which the measurement must tell apart, stops < 35 dB (27)."""
    G = StyleGAN3Generator(resolution=32, channels=3, num_classes=0, z_dim=8, w_dim=8, width=4, max_width=16,
                           num_layers=8, margin_size=4)
    checked = []
    for i, layer in enumerate(G.layers):
        inp, out = G.schedule[max(i - 1, 0)], G.schedule[i]
        fs = layer.sampling_rate
        for f, row in ((layer.up_filter, inp), (layer.down_filter, out)):
            if f is None:
                continue
            assert float(f.sum()) == pytest.approx(1.0, abs=1e-6)
            assert float(frequency_response(f, fs, torch.zeros(1))) == pytest.approx(1.0, abs=1e-6)
            design = kaiser_attenuation(f.numel(), 2 * row["half_width"], fs)
            measured = attenuation_db(f, row["cutoff"] + row["half_width"], fs)
            assert measured > design - 6.0, (i, measured, design)  # Kaiser's formula is approximate at 12 taps
            passband = torch.linspace(0, max(row["cutoff"] - row["half_width"], 0.0), 50)
            assert float(frequency_response(f, fs, passband).min()) > 0.9, i
            checked.append(measured)
    assert len(checked) >= 8 and min(checked) > 20 and max(checked) > 60, checked
    # the window does the work: the plain truncated sinc of the first layer's up filter
    fs, row = G.layers[0].sampling_rate, G.schedule[0]
    n = torch.arange(12, dtype=torch.float64) - 5.5
    box = torch.sinc(2 * row["cutoff"] / fs * n)
    assert attenuation_db((box / box.sum()).float(), row["cutoff"] + row["half_width"], fs) < 35


def test_upfirdn_matches_zero_insertion_and_convolution():
    """upfirdn2d (dense 1-D operators) against numpy: zero insertion, padding/cropping, np.convolve, decimation."""
    f = lowpass_filter(12, 2.0, 12.0, 32)
    x = torch.randn(1, 1, 20, 20)
    for up, down, (lo, hi) in [(2, 1, (9, 8)), (1, 2, (0, 0)), (4, 2, (6, 3)), (2, 2, (-1, 3))]:
        def ref1(v):
            z = np.zeros(20 * up)
            z[::up] = v
            z = np.pad(z, (max(lo, 0), max(hi, 0)))[max(-lo, 0):len(z) + max(lo, 0) + max(hi, 0) - max(-hi, 0)]
            return np.convolve(z, f.numpy(), mode="valid")[::down] * up
        rows = np.stack([ref1(r) for r in x[0, 0].numpy()])
        ref = np.stack([ref1(c) for c in rows.T]).T
        got = upfirdn2d(x, f, up, down, (lo, hi, lo, hi), gain=up ** 2)[0, 0].numpy()
        np.testing.assert_allclose(got, ref, atol=1e-5)


def test_schedule_follows_the_paper():
    """Cutoffs geometric from first_cutoff to R/2 (reached 2 layers before the end), stopbands from first_stopband
    to R/2 x last_stopband_rel, sampling rates the smallest R/2^k above 2 x stopband, margins cropped at the end."""
    rows = layer_schedule(32, 8, 2.0, 2 ** 2.1, 2 ** 0.3, 10)
    cut = np.array([r["cutoff"] for r in rows])
    stop = np.array([r["stopband"] for r in rows])
    np.testing.assert_allclose(cut[[0, 6, 7, 8]], [2, 16, 16, 16])
    np.testing.assert_allclose(np.diff(np.log(cut[:7])), math.log(2) / 2)  # 2 -> 16 in 6 equal ratios
    np.testing.assert_allclose(stop[[0, 8]], [2 ** 2.1, 16 * 2 ** 0.3])
    assert [r["sampling_rate"] for r in rows] == [16, 16, 16, 32, 32, 32, 32, 32, 32]
    assert all(r["sampling_rate"] >= min(2 * r["stopband"], 32) for r in rows)
    assert [r["size"] for r in rows] == [36, 36, 36, 52, 52, 52, 52, 32, 32]
    assert [r["sampling_rate"] for r in layer_schedule(28, 6, 2.0, 2 ** 2.1, 2 ** 0.3, 3)] == [14] * 2 + [28] * 5
    with pytest.raises(DistillError, match="first_stopband"):
        layer_schedule(28, 6, 2.0, 1.5, 2 ** 0.3, 3)  # sampling rate 3.5: not a whole number of pixels


def test_more_translation_equivariant_than_stylegan2():
    """EQ-T (whole pixels) and EQ-T_frac (sub-pixel) PSNRs of the StyleGAN3 paper at initialisation, on outputs
    brought to the same spread: StyleGAN3-T well above StyleGAN2 of the same resolution; and the metric notices
    a generator that ignores the input's translation."""
    G3 = tiny(num_layers=6, margin_size=4, width=8)
    torch.manual_seed(0)
    G2 = StyleGAN2Generator(resolution=16, channels=1, num_classes=3, z_dim=8, w_dim=8, width=8, max_width=16).eval()
    for frac in (False, True):
        s3 = eqt_psnr(G3, num_samples=16, fractional=frac, batch_size=8, normalize=True)
        s2 = eqt_psnr(G2, num_samples=16, fractional=frac, batch_size=8, normalize=True)
        assert s3 > 30 and s3 > s2 + 10, (frac, s3, s2)
    synthesis = G3.synthesis
    G3.synthesis = lambda ws, translate=None, **kw: synthesis(ws)  # drops the translation
    assert eqt_psnr(G3, num_samples=16, batch_size=8, normalize=True) < 25


def test_translate_image_reference():
    x = torch.randn(2, 1, 8, 8)
    y, m = translate_image(x, 2, -1)  # right 2, up 1
    torch.testing.assert_close(y[:, :, :7, 2:], x[:, :, 1:, :6])
    assert int(m.sum()) == 7 * 6 and m[0, 0, :7, 2:].all()
    y, m = translate_image(x, 0.5, 0.0)  # half a pixel: Lanczos-3 needs 3 valid pixels each side
    assert int(m[0, 0, 0].sum()) == 8 - 5


def test_class_conditioning_and_style_based_interface(tmp_path):
    G = tiny()
    assert isinstance(G, StyleBased) and G.num_ws == 4 + 2
    z = torch.randn(3, 8)
    with torch.no_grad():
        a, b = G(z, [0, 0, 0]), G(z, [1, 2, 1])
        assert a.shape == (3, 1, 16, 16) and torch.equal(a, G(z, [0, 0, 0]))
        assert (a - b).abs().amax(dim=(1, 2, 3)).min() > 1e-4  # every sample changes with its class
        G.w_avg[:] = torch.randn_like(G.w_avg)
        mean = G(torch.randn(2, 8), [1, 1], truncation=0.0)  # psi 0: the class's mean w
        torch.testing.assert_close(mean[0], mean[1])
    with pytest.raises(DistillError, match=r"labels must lie in \[0, 2\]"):
        G(z, [0, 3, 1])
    from distill.gan.pictures import style_mixing_grid

    assert style_mixing_grid(G, tmp_path / "mix.png", n=2).stat().st_size > 0


def test_save_load_round_trip(tmp_path):
    """Export and reload: the Fourier features' frequencies and phases (random buffers), the magnitude EMAs and
    w_avg come back, and the images are bitwise equal."""
    G = tiny()
    with torch.no_grad():
        G(torch.randn(8, 8), torch.arange(8) % 3, update_stats=True)  # moves w_avg and the magnitude EMAs
    assert float(G.layers[1].magnitude_ema) != 1.0
    G.save_pretrained(tmp_path / "g")
    H = load_generator(tmp_path / "g")
    assert type(H) is StyleGAN3Generator
    for name, t in G.state_dict().items():
        assert torch.equal(t, H.state_dict()[name]), name
    z, y = torch.randn(4, 8), torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        assert torch.equal(G(z, y, truncation=0.7), H(z, y, truncation=0.7))


def _recipe(folder, **train) -> dict:
    r = tiny_kind_recipe(folder, "stylegan3-t",
                         {"stylegan3": {"num_layers": 4, "margin_size": 2}, "style_mixing_prob": 0.5},
                         {"loss": "ns", "r1_gamma": 0.1, "reg_every": 2}, **train)
    r["discriminator"] = {"kind": "stylegan2", "width": 4, "max_width": 16, "mbstd_group": 2}
    return r


def test_train_resume_export_sample(tmp_path):
    """Interrupted and resumed (style mixing and lazy R1 on), the run repeats an uninterrupted one bitwise, the
    magnitude EMAs included; the export is the EMA generator, `distill sample` draws from it, and it is still
    far more translation-equivariant than the threshold StyleGAN2 never reaches at initialisation."""
    export = check_resume_export_sample(tmp_path, _recipe)
    G = load_generator(export)
    assert isinstance(G, StyleGAN3Generator) and G.w_avg.abs().sum() > 0
    assert all(float(layer.magnitude_ema) != 1.0 for layer in G.layers)
    assert eqt_psnr(G, num_samples=8, batch_size=8, normalize=True) > 30


@pytest.mark.parametrize("data,loss,resolution,channels", [("mnist", "ns", 28, 1), ("cifar10", "rpgan", 32, 3)])
def test_recipes_build(data, loss, resolution, channels):
    """The shipped recipes: stylegan3-t against StyleGAN2's residual discriminator, the StyleGAN family's losses,
    no style mixing; the generator builds from them with the paper's magnitude EMA (half-life 20k images)."""
    from distill.config import load_recipe
    from distill.gan.train import build_networks

    from .gan_kind_checks import ROOT

    r = load_recipe(ROOT / "recipes" / f"gan-stylegan3-t-{data}.yaml")
    assert (r.generator.kind, r.discriminator.kind, r.gan.loss) == ("stylegan3-t", "stylegan2", loss)
    assert r.generator.style_mixing_prob == 0 and (r.data.resolution, r.data.channels) == (resolution, channels)
    G, D = build_networks(r, 10)
    assert isinstance(G, StyleGAN3Generator) and G.num_ws == r.generator.stylegan3.num_layers + 2
    assert G.layers[0].beta == pytest.approx(0.5 ** (32 / 20000))
    assert G.schedule[-1]["cutoff"] == resolution / 2 and type(D).__name__ == "ResidualDiscriminator"
