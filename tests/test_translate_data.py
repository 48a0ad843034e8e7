import numpy as np
import pytest
import torch
from PIL import Image

from distill.errors import DataError
from distill.translate.config import TranslateDataConfig
from distill.translate.data import load_translation

from .translate_fixtures import SHARED, make_aligned, make_npz


def _cfg(src, **kw):
    base = dict(source=str(src), load_size=36, crop_size=32)
    base.update(kw)
    return TranslateDataConfig(**base)


def test_aligned_direction_swap(tmp_path):
    root = make_aligned(tmp_path / "ab")
    ab = load_translation(_cfg(root), "train", train=False)
    ba = load_translation(_cfg(root, direction="BtoA"), "train", train=False)
    assert ab.paired and ab.a.shape == (6, 3, 32, 32)
    assert torch.equal(ab.a, ba.b) and torch.equal(ab.b, ba.a)
    raw = np.asarray(Image.open(root / "train" / "0.png"))
    assert torch.equal(load_translation(_cfg(root, crop_size=36), "train", train=False).a[0],
                       torch.from_numpy(raw[:, :36].copy()).permute(2, 0, 1))


def test_paired_augmentation_shares_crop_and_flip(tmp_path):
    root = make_aligned(tmp_path / "ab")
    cfg = _cfg(root)
    data = load_translation(cfg, "train", train=True)  # stored at load_size 36 (no resize needed)
    a, b = data.batch(torch.arange(6), torch.arange(6), cfg, torch.Generator().manual_seed(0), train=True)
    assert a.shape == (6, 3, 32, 32)
    assert torch.allclose(b, -a, atol=1e-6)  # B = 255 - A survives identical crops and flips


def test_grayscale_in_colour_set(tmp_path):
    root = make_aligned(tmp_path / "ab")
    Image.fromarray(np.full((36, 72), 77, np.uint8), mode="L").save(root / "train" / "grey.png")
    data = load_translation(_cfg(root), "train", train=False)
    assert data.a.shape[1] == 3 and len(data.a) == 7
    grey = load_translation(_cfg(root, input_nc=1, output_nc=1), "train", train=False)
    assert grey.a.shape[1] == 1


def test_npz_unaligned_and_folders(tmp_path):
    data = load_translation(_cfg(make_npz(tmp_path / "d.npz"), load_size=32), "train", train=True)
    assert not data.paired and len(data.a) == 6 and len(data.b) == 8
    root = tmp_path / "u"
    for d, n in (("trainA", 3), ("trainB", 4)):
        (root / d).mkdir(parents=True)
        for k in range(n):
            Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(root / d / f"{k}.jpg")
    u = load_translation(_cfg(root), "train", train=False)
    assert (len(u.a), len(u.b), u.paired) == (3, 4, False)
    p = tmp_path / "p"
    for d in ("A", "B"):
        (p / d / "train").mkdir(parents=True)
        for k in range(2):
            Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(p / d / "train" / f"{k}.jpg")
    assert load_translation(_cfg(p), "train", train=False).paired


def test_data_errors(tmp_path):
    sq = tmp_path / "sq" / "train"
    sq.mkdir(parents=True)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(sq / "0.png")
    with pytest.raises(DataError, match="missing half"):
        load_translation(_cfg(tmp_path / "sq"), "train")
    empty = tmp_path / "e"
    (empty / "trainA").mkdir(parents=True)
    (empty / "trainB").mkdir(parents=True)
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(empty / "trainA" / "0.png")
    with pytest.raises(DataError, match="empty domain"):
        load_translation(_cfg(empty), "train")
    (tmp_path / "h" / "trainA").mkdir(parents=True)
    with pytest.raises(DataError, match="missing half"):
        load_translation(_cfg(tmp_path / "h", dataset_mode="unaligned"), "train")
    p = tmp_path / "p"
    for d, n in (("A", 3), ("B", 2)):
        (p / d / "train").mkdir(parents=True)
        for k in range(n):
            Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(p / d / "train" / f"{k}.jpg")
    with pytest.raises(DataError, match="3 A vs 2 B"):
        load_translation(_cfg(p), "train")
    np.savez(tmp_path / "x.npz", trainA=np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(DataError, match="trainB"):
        load_translation(_cfg(tmp_path / "x.npz"), "train")
    cfg = _cfg(make_npz(tmp_path / "n.npz"), load_size=16, crop_size=24)
    d = load_translation(cfg, "train")
    with pytest.raises(DataError, match="crop_size"):
        d.batch(torch.arange(2), torch.arange(2), cfg)


@pytest.mark.parametrize("name", ["facades", "horse2zebra"])
def test_real_data_formats(name):
    if name == "facades":
        src = SHARED / "facades"
        if not src.is_dir():
            pytest.skip("../shared/data/facades not present")
        d = load_translation(_cfg(src, direction="BtoA", max_images=3, load_size=64, crop_size=64), "test", train=False)
        assert d.paired and d.a.shape == (3, 3, 64, 64)
    else:
        src = SHARED / "horse2zebra" / "horse2zebra_64px.npz"
        if not src.is_file():
            pytest.skip("../shared/data/horse2zebra not present")
        d = load_translation(_cfg(src, load_size=64, crop_size=64), "test", train=False)
        assert not d.paired and d.a.shape[1:] == (3, 64, 64) and len(d.b) > 0
