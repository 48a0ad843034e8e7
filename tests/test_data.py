import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from distill.config import DataConfig
from distill.data import load_images
from distill.errors import DataError


def test_digits_default_no_download():
    d = load_images(DataConfig(source="digits", resolution=16))
    assert d.images.shape[1:] == (1, 16, 16) and d.images.dtype == torch.uint8
    assert d.num_classes == 10 and d.labels.shape == (len(d),)
    test = load_images(DataConfig(source="digits", split="test", resolution=16))
    assert len(d) + len(test) == 1797
    x, y = d.batch(torch.arange(4))
    assert x.min() >= -1 and x.max() <= 1 and x.dtype == torch.float32


def test_npz_and_channels(tmp_path):
    x = np.random.randint(0, 255, (10, 12, 12), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", x_train=x, y_train=np.arange(10) % 3)
    d = load_images(DataConfig(source=str(tmp_path / "a.npz"), resolution=8, channels=3))
    assert d.images.shape == (10, 3, 8, 8) and d.num_classes == 3


def test_npz_hwc_colour(tmp_path):
    np.savez(tmp_path / "c.npz", trainA=np.zeros((4, 16, 16, 3), np.uint8))
    d = load_images(DataConfig(source=str(tmp_path / "c.npz"), image_key="trainA", label_key="", resolution=16, channels=3))
    assert d.images.shape == (4, 3, 16, 16) and d.labels is None


def test_folder_with_classes(tmp_path):
    for c in ["cat", "dog"]:
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.fromarray(np.full((10, 14, 3), 40 * i, np.uint8)).save(tmp_path / c / f"{i}.png")
    d = load_images(DataConfig(source=str(tmp_path), resolution=8, channels=1))
    assert d.images.shape == (6, 1, 8, 8) and d.num_classes == 2 and d.labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_mnist_npz(mnist_npz):
    d = load_images(DataConfig(source=str(mnist_npz), split="test", resolution=28))
    assert d.images.shape == (10000, 1, 28, 28) and d.num_classes == 10


# ---- errors: one line, naming the file or key

def test_missing_path():
    with pytest.raises(DataError, match="nope/x.npz: file not found"):
        load_images(DataConfig(source="nope/x.npz"))
    with pytest.raises(DataError, match="path not found"):
        load_images(DataConfig(source="./no/such/folder"))


def test_empty_folder(tmp_path):
    with pytest.raises(DataError, match="no images found"):
        load_images(DataConfig(source=str(tmp_path)))


def test_unreadable_image_names_file(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"broken\.png: unreadable image"):
        load_images(DataConfig(source=str(tmp_path), resolution=8))


def test_inconsistent_shapes(tmp_path):
    np.savez(tmp_path / "a.npz", x_train=np.zeros((10, 8, 8), np.uint8), y_train=np.zeros(7, np.int64))
    with pytest.raises(DataError, match="7 labels for 10 images"):
        load_images(DataConfig(source=str(tmp_path / "a.npz")))
    np.savez(tmp_path / "b.npz", x_train=np.zeros((10, 8), np.uint8))
    with pytest.raises(DataError, match="shape"):
        load_images(DataConfig(source=str(tmp_path / "b.npz")))


def test_missing_label_key(tmp_path):
    np.savez(tmp_path / "a.npz", x_train=np.zeros((10, 8, 8), np.uint8))
    with pytest.raises(DataError, match="no label key 'target'"):
        load_images(DataConfig(source=str(tmp_path / "a.npz"), label_key="target"))


def test_missing_image_key(tmp_path):
    np.savez(tmp_path / "a.npz", foo=np.zeros((10, 8, 8), np.uint8))
    with pytest.raises(DataError, match="no image array for split 'train'"):
        load_images(DataConfig(source=str(tmp_path / "a.npz")))


def test_cli_data_error_exit_code(tmp_path):
    r = {"task": "teacher", "output_dir": str(tmp_path / "run"), "data": {"source": str(tmp_path / "none.npz")}}
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(r))
    res = subprocess.run([sys.executable, "-m", "distill.cli", "run", str(p)], capture_output=True, text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().count("\n") == 0 and "none.npz: file not found" in res.stderr


# ---- image folders with split sub-folders (root/train/<class>/*.png, root/test/<class>/*.png)

def test_folder_split_layout_picks_split_and_labels(tmp_path):
    from .image_fixtures import COLOURS, write_split_folder

    write_split_folder(tmp_path, {"train": ("buildings", "forest", "sea"), "test": ("forest", "sea")},
                       per_class=3)
    tr = load_images(DataConfig(source=str(tmp_path), split="train", resolution=8, channels=3))
    te = load_images(DataConfig(source=str(tmp_path), split="test", resolution=8, channels=3))
    assert tr.images.shape == (9, 3, 8, 8) and te.images.shape == (6, 3, 8, 8)
    # classes are the folder names under the split (not test/forest), one mapping for every split
    assert tr.num_classes == te.num_classes == 3
    assert tr.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and te.labels.tolist() == [1, 1, 1, 2, 2, 2]
    # RGB kept: each class's dominant channel is its colour's
    for data in (tr, te):
        mean = data.images.float().mean((2, 3))
        for img, lab in zip(mean, data.labels.tolist()):
            colour = COLOURS[["buildings", "forest", "sea"][lab]]
            assert int(img.argmax()) == int(np.argmax(colour))


def test_folder_split_layout_bad_split(tmp_path):
    from .image_fixtures import write_split_folder

    write_split_folder(tmp_path, per_class=1)
    with pytest.raises(DataError, match=r"no split 'validation' \(splits found: test, train\)") as e:
        load_images(DataConfig(source=str(tmp_path), split="validation", resolution=8, channels=3))
    assert "\n" not in str(e.value)


def test_folder_split_layout_unlabelled_split(tmp_path):
    """root/train/*.png (images straight in the split folder): the split, unlabelled."""
    for split, n in (("train", 3), ("test", 2)):
        (tmp_path / split).mkdir()
        for i in range(n):
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / split / f"{i}.png")
    d = load_images(DataConfig(source=str(tmp_path), split="test", resolution=8, channels=3))
    assert len(d) == 2 and d.labels is None


def test_folder_class_layout_ignores_split(tmp_path):
    """Without split folders the folder is one set of class folders, whatever data.split says."""
    from .image_fixtures import write_class_folder

    write_class_folder(tmp_path, per_class=2)
    a = load_images(DataConfig(source=str(tmp_path), split="train", resolution=8, channels=3))
    b = load_images(DataConfig(source=str(tmp_path), split="test", resolution=8, channels=3))
    assert a.num_classes == 3 and a.labels.tolist() == [0, 0, 1, 1, 2, 2] and torch.equal(a.images, b.images)
