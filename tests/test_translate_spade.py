"""SPADE (task: spade): label maps, the SPADE layer's locality, the style encoder's KL term, the
multi-scale discriminator's feature matching, training + exact resume, export and `distill translate`."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from distill.config import recipe_from_dict
from distill.engine.run_dir import read_metrics
from distill.errors import DataError, RecipeError
from distill.tasks import run_task
from distill.translate.config import TranslateDataConfig
from distill.translate.data import load_translation
from distill.translate.labels import CMP_PALETTE, LabelsConfig, one_hot, palette_of
from distill.translate.multiscale import MultiscaleDiscriminator, feature_matching
from distill.translate.spade import SPADE, SPADEGenerator, initialize, kl_divergence

from .translate_fixtures import (SHARED, make_aligned, make_label_aligned, spade_recipe, tiny_images,
                                 tiny_label_maps)


@pytest.fixture
def labelled(tmp_path):
    return make_label_aligned(tmp_path / "labels-tiny")


def _data_cfg(source, **kw):
    return TranslateDataConfig(source=str(source), direction="BtoA", load_size=32, crop_size=32, **kw)


# ------------------------------------------------------------------------------------------- label maps


def test_colour_label_maps_read_as_classes(tmp_path, labelled):
    d = load_translation(_data_cfg(labelled), "test", train=False, labels=LabelsConfig())
    assert d.a.shape == (6, 1, 32, 32) and d.num_classes == 12
    assert torch.equal(d.a[:, 0], torch.from_numpy(tiny_label_maps(6, seed=1)))  # split "test" is seed 1
    x, y = d.batch(torch.arange(2), torch.arange(2), _data_cfg(labelled), None, train=False)
    assert x.shape == (2, 12, 32, 32) and torch.equal(x.sum(1), torch.ones(2, 32, 32))
    # JPEG-blurred colour codes still give the class of nearly every pixel
    lab = tiny_label_maps(1, size=64, seed=3)[0].repeat(4, 0).repeat(4, 1)  # 32-pixel regions, as facades'
    Image.fromarray(np.array(CMP_PALETTE, dtype=np.uint8)[lab]).save(tmp_path / "lab.jpg", quality=75)
    from distill.translate.labels import read_label_image

    with Image.open(tmp_path / "lab.jpg") as im:
        got = read_label_image(im, LabelsConfig(), "lab.jpg")[0].numpy()
    assert (got == lab).mean() > 0.97


@pytest.mark.skipif(not (SHARED / "facades").is_dir(), reason="needs ../shared/data/facades")
def test_facades_label_halves_are_label_maps():
    cfg = TranslateDataConfig(source=str(SHARED / "facades"), direction="BtoA", load_size=128, crop_size=128,
                              max_images=20)
    d = load_translation(cfg, "val", train=False, labels=LabelsConfig())
    counts = torch.bincount(d.a.flatten().long(), minlength=12)
    assert counts.argmax() == 1  # "facade" covers most of a facade picture
    cfg.direction = "AtoB"  # the photo halves as label maps: refused, naming the file
    with pytest.raises(DataError, match=r"val/\S+\.jpg \(left half\): not a label map"):
        load_translation(cfg, "val", train=False, labels=LabelsConfig())


def test_bad_label_maps_are_one_line_errors(tmp_path):
    photos = make_aligned(tmp_path / "photos", n=2, size=32)  # A | 255 - A photos
    with pytest.raises(DataError, match=r"train/\d\.png \(right half\): not a label map"):
        load_translation(_data_cfg(photos), "train", train=False, labels=LabelsConfig())
    # integer PNGs: values beyond the class count
    for split in ("A/train", "B/train"):
        (tmp_path / "ints" / split).mkdir(parents=True)
    Image.fromarray(tiny_label_maps(1, seed=0)[0] + 12).save(tmp_path / "ints" / "B" / "train" / "0.png")  # mode L
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "ints" / "A" / "train" / "0.png")
    with pytest.raises(DataError, match=r"0\.png: label values 12\.\.23 do not fit translate\.labels\.num_classes=12"):
        load_translation(_data_cfg(tmp_path / "ints"), "train", train=False, labels=LabelsConfig())
    assert load_translation(_data_cfg(tmp_path / "ints"), "train", train=False, labels=LabelsConfig(num_classes=24)).a.max() == 23
    # .npz arrays: non-integer values, wrong shape
    for name, arr, msg in (("float", np.full((2, 32, 32), 0.5), "non-integer values"),
                           ("rgb", np.zeros((2, 32, 32, 3), np.uint8), r"must be \(N, H, W\) class indices")):
        np.savez(tmp_path / f"{name}.npz", trainA=np.zeros((2, 32, 32, 3), np.uint8), trainB=arr)
        with pytest.raises(DataError, match=msg):
            load_translation(_data_cfg(tmp_path / f"{name}.npz"), "train", train=False, labels=LabelsConfig())
    # colour label maps with another class count need a palette of that many colours
    with pytest.raises(DataError, match="needs translate.labels.palette"):
        load_translation(_data_cfg(photos), "train", train=False, labels=LabelsConfig(num_classes=5))
    with pytest.raises(RecipeError, match="translate.labels.palette: needs 3 RGB colours"):
        palette_of(LabelsConfig(num_classes=3, palette=[[0, 0, 0], [255, 255, 255]]))


# ------------------------------------------------------------------------------------------- SPADE layer


def test_spade_layer_is_norm_times_one_plus_gamma_plus_beta_of_the_label_map():
    torch.manual_seed(0)
    layer = SPADE(4, label_nc=3, hidden=5, norm="batch").eval()
    x = torch.randn(1, 4, 16, 16)
    seg = one_hot(torch.zeros(1, 1, 16, 16, dtype=torch.uint8), 3)
    a = layer.shared(seg)
    assert torch.allclose(layer(x, seg), layer.norm(x) * (1 + layer.gamma(a)) + layer.beta(a), atol=1e-6)
    seg2 = seg.clone()
    seg2[:, :, 6:10, 6:10] = one_hot(torch.full((1, 1, 4, 4), 2, dtype=torch.uint8), 3)
    d = (layer(x, seg) - layer(x, seg2)).abs().amax(1)[0]
    # shared conv3x3 then gamma/beta conv3x3: the change reaches 2 pixels beyond the region, no farther
    inside = torch.zeros(16, 16, dtype=torch.bool)
    inside[4:12, 4:12] = True
    assert d[6:10, 6:10].min() > 0 and d[~inside].max() == 0


def _region_change(norm: str):
    """Output change of a 128 px generator (ngf 1) when a 7 x 7 region changes class."""
    torch.manual_seed(0)
    G = initialize(SPADEGenerator(4, 3, 128, ngf=1, hidden=2, norm=norm), 1.0).eval()
    lab = torch.zeros(1, 1, 128, 128, dtype=torch.uint8)
    lab2 = lab.clone()
    lab2[..., 57:64, 57:64] = 2  # rows / columns 57-63 hold no multiple of 8: invisible below 32 x 32
    with torch.no_grad():
        return (G(one_hot(lab, 4)) - G(one_hot(lab2, 4))).abs().amax(1)[0]


def test_changing_one_region_changes_the_output_only_near_it():
    """The region first enters at the 32 x 32 layer (block 4): a SPADE block reaches 4 of its pixels
    (16 output pixels) through its label map, blocks 5 and 6 and the output conv 2 + 2 + 1 more, plus
    3 pixels of alignment of a 4 x 4 cell: 26 pixels. Outside that margin the output is exactly the
    same; with instance norm (statistics over the whole map) it is not."""
    d = _region_change("batch")
    near = torch.zeros(128, 128, dtype=torch.bool)
    near[57 - 26:64 + 26, 57 - 26:64 + 26] = True
    assert d[57:64, 57:64].mean() > 1e-2  # the region itself changed
    assert d[~near].max() == 0 and (~near).float().mean() > 0.7
    leaky = _region_change("instance")
    assert leaky[~near].max() > 1e-4


# ------------------------------------------------------------------------------------------- style encoder, D


def test_kl_term_is_the_gaussian_kl_to_the_standard_normal():
    mu, logvar = torch.randn(5, 7), torch.randn(5, 7)
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mu, (0.5 * logvar).exp()),
                                            torch.distributions.Normal(0.0, 1.0)).sum(1)
    assert torch.allclose(kl_divergence(mu, logvar), ref, atol=1e-5)
    assert torch.equal(kl_divergence(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2))


def test_multiscale_feature_matching():
    torch.manual_seed(0)
    D = initialize(MultiscaleDiscriminator(5, ndf=4, n_layers=3, num_D=3))
    x = torch.randn(2, 5, 32, 32)
    outs = D(x)
    assert len(outs) == 3 and [o[-1].shape[1] for o in outs] == [1, 1, 1]
    assert outs[0][-1].shape[-1] > outs[1][-1].shape[-1] > outs[2][-1].shape[-1]  # each scale halves the input
    D.eval()  # no power-iteration step between the two calls
    assert torch.equal(feature_matching(D(x), D(x)), torch.zeros(2))
    D.train()
    G = initialize(SPADEGenerator(2, 3, 32, ngf=1, hidden=2, norm="batch"))
    seg = one_hot(torch.from_numpy(tiny_label_maps(2, classes=2))[:, None], 2)
    fake, real = G(seg), torch.rand(2, 3, 32, 32) * 2 - 1
    fm = feature_matching(D(torch.cat([seg, fake], 1)), D(torch.cat([seg, real], 1)))
    assert fm.shape == (2,) and (fm > 0).all()
    fm.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in G.conv_img.parameters())


# ------------------------------------------------------------------------------------------- training, inference


def test_spade_trains_with_style_encoder_and_resumes_exactly(tmp_path, labelled):
    def make(p, **t):
        d = spade_recipe(p, labelled, mixed_precision="no", **t)
        d["translate"]["style_encoder"] = True
        return d

    full = run_task(recipe_from_dict(make(tmp_path / "full")))
    rows = read_metrics(full / "metrics.jsonl")
    assert {"loss_gan", "loss_feat", "loss_kld", "d_acc_real", "grad_norm_g"} <= set(rows[0])
    assert rows[0]["loss_kld"] > 0 and rows[0]["lr"] == 1e-4 and rows[0]["lr_d"] == 4e-4
    ckpt = full / "checkpoints" / "checkpoint-6"
    assert {"G.safetensors", "D.safetensors", "E.safetensors"} <= {f.name for f in ckpt.iterdir()}
    part = tmp_path / "part"
    run_task(recipe_from_dict(make(part, interrupt_at=3)))
    resumed = run_task(recipe_from_dict(make(part, resume_from_checkpoint="latest")))
    for f in ckpt.glob("*.safetensors"):  # G, D (with the spectral norms' power-iteration vectors), E
        a, b = load_file(str(f)), load_file(str(resumed / "checkpoints" / "checkpoint-6" / f.name))
        assert all(torch.equal(a[k], b[k]) for k in a), f.name
    assert [r["loss_g"] for r in rows] == [r["loss_g"] for r in read_metrics(resumed / "metrics.jsonl")]


def test_export_and_translate_label_maps_in_a_fresh_process(tmp_path, labelled):
    pytest.importorskip("onnx")
    d = spade_recipe(tmp_path, labelled, max_steps=2)
    d["translate"]["style_encoder"] = True
    d["eval"]["num_samples"] = 1
    run = run_task(recipe_from_dict(d))
    assert json.loads((run / "eval.json").read_text())["metrics"]["n"] == 6 and (run / "eval-grid.png").is_file()
    label = labelled / "test" / "0.png"
    with Image.open(label) as im:
        im.crop((32, 0, 64, 32)).save(tmp_path / "label.png")
        im.crop((0, 0, 32, 32)).save(tmp_path / "photo.png")

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "distill.cli", "translate", str(run), *map(str, args)],
                              capture_output=True, text=True, timeout=300)

    outs = []
    for extra in ([], ["--seed", "1"], ["--style", tmp_path / "photo.png"]):
        out = tmp_path / f"out{len(outs)}.png"
        res = cli(tmp_path / "label.png", out, *extra)
        assert res.returncode == 0, res.stderr
        outs.append(np.asarray(Image.open(out)))
    assert outs[0].shape == (32, 32, 3)
    assert not np.array_equal(outs[0], outs[1]) and not np.array_equal(outs[0], outs[2])  # other styles
    from distill.translate.infer import load_generator, load_style_encoder
    from distill.translate.spade import SPADEGenerator, StyleEncoder

    ckpt = run / "checkpoints" / "checkpoint-2"  # the export (spectral norms folded) computes what the checkpoint does
    G = SPADEGenerator.from_pretrained(str(run)).eval()
    E = StyleEncoder.from_pretrained(str(run / "style_encoder")).eval()
    seg, z = torch.rand(2, G.config.label_nc, 32, 32), torch.randn(2, G.config.z_dim)
    photo = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(G(seg, z), load_generator(ckpt)[0](seg, z), atol=1e-5)
        assert torch.allclose(E(photo)[0], load_style_encoder(ckpt)(photo)[0], atol=1e-5)
    res = cli("--onnx", tmp_path / "g.onnx")
    assert res.returncode == 0 and (tmp_path / "g.onnx").is_file(), res.stderr
    Image.fromarray(tiny_images(1, 32, seed=4)[0]).save(tmp_path / "photo.png")
    res = cli(tmp_path / "photo.png", tmp_path / "bad.png")  # a photo where a label map is expected
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "photo.png: not a label map" in res.stderr


def test_vgg_loss_without_local_weights_is_a_notice(tmp_path, capfd):
    from distill.translate.config import TranslateConfig
    from distill.translate.semantic import Spade

    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))  # an empty cache: nothing is downloaded
    try:
        m = Spade(TranslateConfig(lambda_vgg=10.0, ngf=1, ndf=2, spade_hidden=2, n_layers_D=1), _data_cfg(tmp_path))
    finally:
        torch.hub.set_dir(old)
    assert m.vgg is None
    notes = [line for line in capfd.readouterr().out.splitlines() if "lambda_vgg" in line]
    assert len(notes) == 1 and "the VGG loss is off" in notes[0]
