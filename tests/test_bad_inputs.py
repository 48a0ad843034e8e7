"""The bad-input campaign: every subcommand given bad input exits non-zero with exactly one line on
stderr, no traceback, before doing any work, and leaves existing run folders byte-for-byte as they
were. Cases run in-process through `distill.cli.main(argv)`.

To add a case, append a `Case` to CASES: `argv` may use the placeholders {root} (the test world),
{afile} (an existing plain file), {run} (a healthy run folder), {broken} (a run folder whose
checkpoints are all damaged), {teacher} (the shipped digits teacher), {recipe} (a tiny valid teacher
recipe); `files` are written under {root} first (relative path -> text, formatted the same way);
`expect` must appear in the error line.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from distill.cli import main as cli
from distill.engine.checkpoint import load_checkpoint, resolve_resume, save_checkpoint
from distill.errors import DataError, DistillError

from .image_fixtures import write_class_folder, write_split_folder

ROOT = Path(__file__).resolve().parent.parent
TEACHER = ROOT / "distill" / "assets" / "teachers" / "digits"


@dataclass
class Case:
    name: str
    argv: list[str]
    expect: str
    files: dict[str, str] = field(default_factory=dict)


def recipe(**sections) -> str:
    """A tiny teacher recipe (YAML) with `sections` merged in (section -> {key: value})."""
    r = {"task": "teacher", "name": "bad-input", "output_dir": "{root}/new-run",
         "data": {"source": "digits", "resolution": 8, "limit": 32},
         "teacher": {"block_out_channels": [8, 16], "norm_num_groups": 4},
         "train": {"max_steps": 1, "batch_size": 8, "lr_warmup_steps": 0, "sample_every": 1000},
         "eval": {"num_samples": 0}}
    for k, v in sections.items():
        r[k] = {**r[k], **v} if isinstance(v, dict) and isinstance(r.get(k), dict) else v
    return yaml.safe_dump(r)


S, E, B, T, L, D, R = ["sample", "{teacher}"], ["eval", "{teacher}"], ["bench", "latency", "--teacher", "{teacher}"], \
    ["translate"], ["lab", "--out", "{root}/lab-out"], ["doctor"], ["run"]

CASES = [
    # sample: numbers, paths, names
    Case("sample-steps-0", S + ["--steps", "0"], "argument --steps: must be >= 1, got 0"),
    Case("sample-steps-text", S + ["--steps", "abc"], "argument --steps: expected an integer, got 'abc'"),
    Case("sample-guidance-negative", S + ["--guidance", "-1"], "argument --guidance: must be >= 0"),
    Case("sample-guidance-nan", S + ["--guidance", "nan"], "expected a finite number"),
    Case("sample-per-class-0", S + ["--per-class", "0"], "argument --per-class: must be >= 1"),
    Case("sample-out-below-file", S + ["--out", "{afile}/grid.png"], "is a file"),
    Case("sample-out-is-folder", S + ["--out", "{root}"], "is a folder, expected a file path"),
    Case("sample-pipeline-missing", ["sample", "./no/such/pipeline"], "not found"),
    Case("sample-pipeline-is-file", ["sample", "{afile}"], "not a pipeline folder"),
    Case("sample-pipeline-no-index", ["sample", "{run}"], "no model_index.json"),
    Case("sample-scheduler-unknown", S + ["--scheduler", "bogus"], "--scheduler 'bogus': unknown"),
    # eval
    Case("eval-steps-0", E + ["--steps", "1", "0"], "argument --steps: must be >= 1, got 0"),
    Case("eval-batch-0", E + ["--batch-size", "0"], "argument --batch-size: must be >= 1"),
    Case("eval-num-samples-negative", E + ["--num-samples", "-3"], "argument --num-samples: must be >= 1"),
    Case("eval-guidance-negative", E + ["--guidance", "-0.5"], "argument --guidance: must be >= 0"),
    Case("eval-guidance-sweep-negative", E + ["--guidance-sweep", "2", "-1"], "argument --guidance-sweep: must be >= 0"),
    Case("eval-guidance-steps-0", E + ["--guidance-steps", "0"], "argument --guidance-steps: must be >= 1"),
    Case("eval-out-below-file", E + ["--out", "{afile}/eval"], "is a file"),
    Case("eval-recipe-missing", E + ["--recipe", "{root}/missing.yaml"], "--recipe {root}/missing.yaml: not found"),
    Case("eval-pipeline-missing", ["eval", "{root}/nope"], "not found"),
    # bench latency
    Case("bench-batch-0", B + ["--batch-sizes", "1", "0"], "argument --batch-sizes: must be >= 1"),
    Case("bench-steps-0", B + ["--teacher-steps", "0"], "argument --teacher-steps: must be >= 1"),
    Case("bench-repeats-0", B + ["--repeats", "0"], "argument --repeats: must be >= 1"),
    Case("bench-threads-0", B + ["--threads", "0"], "argument --threads: must be >= 1"),
    Case("bench-guidance-negative", B + ["--guidance", "-2"], "argument --guidance: must be >= 0"),
    Case("bench-out-below-file", B + ["--out", "{afile}/bench"], "is a file"),
    Case("bench-nothing-to-time", ["bench", "latency"], "nothing to time"),
    Case("bench-teacher-missing", ["bench", "latency", "--teacher", "{root}/nope"], "no such pipeline folder"),
    Case("bench-device-unknown", B + ["--device", "tpu"], "unknown --device 'tpu'"),
    Case("bench-no-benchmark", ["bench"], "choose a benchmark"),
    # translate
    Case("translate-checkpoint-missing", T + ["{root}/nope", "{root}/in", "{root}/out"], "CHECKPOINT {root}/nope: not found"),
    Case("translate-not-translate-ckpt", T + ["{run}", "{root}/in", "{root}/tr-out"], "not a pix2pix / CycleGAN / SPADE checkpoint"),
    Case("translate-all-damaged", T + ["{broken}", "{root}/in", "{root}/tr-out"], "{broken}: no readable checkpoint"),
    Case("translate-damaged-explicit", T + ["{broken}/checkpoints/checkpoint-2", "{root}/in", "{root}/tr-out"],
         "checkpoint-2/G.safetensors: damaged safetensors file"),
    Case("translate-batch-0", T + ["{run}", "{root}/in", "{root}/tr-out", "--batch", "0"], "argument --batch: must be >= 1"),
    Case("translate-input-missing", T + ["{run}", "{root}/no-input", "{root}/tr-out"], "INPUT {root}/no-input: not found"),
    Case("translate-output-below-file", T + ["{run}", "{root}/in", "{afile}/out"], "is a file"),
    Case("translate-onnx-below-file", T + ["{run}", "--onnx", "{afile}/g.onnx"], "--onnx {afile}/g.onnx"),
    Case("translate-nothing-to-do", T + ["{run}"], "give INPUT and OUTPUT, or --onnx PATH"),
    # lab
    Case("lab-steps-0", L + ["--steps", "0"], "argument --steps: must be >= 1"),
    Case("lab-lr-0", L + ["--lr", "0"], "argument --lr: must be > 0"),
    Case("lab-loss-unknown", L + ["--loss", "bogus"], "unknown loss 'bogus'"),
    Case("lab-reg-unknown", L + ["--reg", "sn,bogus"], "unknown regulariser 'bogus'"),
    Case("lab-dataset-unknown", L + ["--dataset", "bogus"], "unknown toy dataset 'bogus'"),
    Case("lab-out-below-file", ["lab", "--out", "{afile}/lab"], "is a file"),
    # doctor
    Case("doctor-missing", D + ["{root}/nope"], "RUN_FOLDER {root}/nope: not found"),
    Case("doctor-file", D + ["{afile}"], "not a folder"),
    Case("doctor-no-metrics", D + ["{root}/in"], "metrics.jsonl: not found"),
    Case("doctor-garbage-metrics", D + ["{root}/garbage-run"], "no metrics rows",
         files={"garbage-run/metrics.jsonl": "not json\n{also not\n"}),
    # run: recipe problems found before training starts
    Case("run-recipe-missing", R + ["{root}/missing.yaml"], "RECIPE {root}/missing.yaml: not found"),
    Case("run-recipe-is-folder", R + ["{root}"], "not a file"),
    Case("run-bad-yaml", R + ["{root}/bad.yaml"], "bad.yaml: not valid YAML (line 3)",
         files={"bad.yaml": "task: teacher\ndata: {source: digits\n"}),
    Case("run-not-a-mapping", R + ["{root}/list.yaml"], "a recipe must be a mapping", files={"list.yaml": "- a\n- b\n"}),
    Case("run-missing-task", R + ["{root}/notask.yaml"], "missing required key 'task'",
         files={"notask.yaml": "name: x\ndata: {source: digits}\n"}),
    Case("run-unknown-task", R + ["{root}/badtask.yaml"], "unknown task 'nope'", files={"badtask.yaml": "task: nope\n"}),
    Case("run-unknown-key", R + ["{root}/unk.yaml"], "unknown key 'data.nonsense'",
         files={"unk.yaml": recipe(data={"nonsense": 1})}),
    Case("run-bad-override", R + ["{recipe}", "nokey"], "override 'nokey' is not of the form section.key=value"),
    # run: bad data values (distill.data.images), one line naming file[key]
    Case("run-data-nan", R + ["{root}/r-nan.yaml"], "nan.npz[x_train]: 1 non-finite pixel values",
         files={"r-nan.yaml": recipe(data={"source": "{root}/nan.npz"})}),
    Case("run-data-range", R + ["{root}/r-range.yaml"], "range.npz[x_train]: float pixel values range over [0, 300], expected [0, 1], [-1, 1] or [0, 255]",
         files={"r-range.yaml": recipe(data={"source": "{root}/range.npz"})}),
    Case("run-data-int-range", R + ["{root}/r-int.yaml"], "intrange.npz[x_train]: integer pixel values range over [-5, 300]",
         files={"r-int.yaml": recipe(data={"source": "{root}/intrange.npz"})}),
    Case("run-data-negative-label", R + ["{root}/r-neg.yaml"], "neglabel.npz[y_train]: label -1 is negative",
         files={"r-neg.yaml": recipe(data={"source": "{root}/neglabel.npz"})}),
    Case("run-data-fractional-label", R + ["{root}/r-frac.yaml"], "fraclabel.npz[y_train]: labels must be whole numbers",
         files={"r-frac.yaml": recipe(data={"source": "{root}/fraclabel.npz"})}),
    Case("run-data-not-npz", R + ["{root}/r-trunc.yaml"], "trunc.npz: cannot read as .npz",
         files={"r-trunc.yaml": recipe(data={"source": "{root}/trunc.npz"})}),
    # classifier train: paths, numbers, data
    Case("classifier-out-below-file", ["classifier", "train", "--data", "digits", "--out", "{afile}/c.safetensors"],
         "--out {afile}/c.safetensors: cannot be created, {afile} is a file"),
    Case("classifier-out-suffix", ["classifier", "train", "--data", "digits", "--out", "{root}/c.pt"],
         "must end in .safetensors"),
    Case("classifier-steps-0", ["classifier", "train", "--data", "digits", "--out", "{root}/c.safetensors",
                                "--steps", "0"], "argument --steps: must be >= 1, got 0"),
    Case("classifier-unlabelled", ["classifier", "train", "--data", "{root}/in", "--out", "{root}/c.safetensors"],
         "no labels"),
    # run: output_dir that cannot be a folder (before the accelerator or anything else is set up)
    Case("run-output-below-file", R + ["{recipe}", "output_dir={afile}/run"],
         "output_dir {afile}/run: cannot be created, {afile} is a file"),
    Case("run-output-is-file", R + ["{recipe}", "output_dir={afile}"], "output_dir {afile}: is a file, expected a folder"),
    # run: a damaged image folder (split layout): a class whose folder is only in test
    Case("run-folder-class-only-in-test", R + ["{root}/r-testonly.yaml"],
         "{root}/testonly/test: class folder 'sea' has no images in {root}/testonly/train",
         files={"r-testonly.yaml": recipe(data={"source": "{root}/testonly", "channels": 3})}),
    # run: resume when every checkpoint is damaged (fails before training, nothing written into it)
    Case("run-resume-all-damaged", R + ["{root}/r-resume.yaml"], "{broken}: no readable checkpoint",
         files={"r-resume.yaml": recipe(output_dir="{broken}", train={"resume_from_checkpoint": "latest"})}),
    # ranges and cross-field checks of the recipe schema, through the command line
    *[Case(f"run-range-{key}", R + ["recipes/digits.yaml", f"{key}={value}", "output_dir={root}/never"],
           f"recipes/digits.yaml: key '{shown}' must", ) for key, value, shown in [
        ("train.batch_size", "0", "train.batch_size"), ("train.learning_rate", "-1.0", "train.learning_rate"),
        ("train.max_steps", "-5", "train.max_steps"), ("data.limit", "0", "data.limit"),
        ("eval.batch_size", "0", "eval.batch_size"), ("discriminator.r1_every", "0", "discriminator.r1_every"),
        ("distill.student_timesteps", "[249,999]", "distill.student_timesteps"),
        ("distill.teacher_guidance", "-2", "distill.teacher_guidance")]],
]


def _save_tiny_checkpoint(run: Path, step: int) -> Path:
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters())
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    return save_checkpoint(run, step, {"G": net}, {"optimizer": opt})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    (root / "afile").write_text("a plain file\n")
    run = root / "run"  # a healthy run folder: metrics, recipe, one checkpoint
    _save_tiny_checkpoint(run, 2)
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}\n')
    (run / "recipe.yaml").write_text("task: teacher\n")
    broken = root / "broken"  # every checkpoint damaged: garbage state.json, truncated weights
    for step in (1, 2):
        _save_tiny_checkpoint(broken, step)
    (broken / "checkpoints" / "checkpoint-1" / "state.json").write_text("{not json")
    w = broken / "checkpoints" / "checkpoint-2" / "G.safetensors"
    w.write_bytes(w.read_bytes()[:40])
    (broken / "metrics.jsonl").write_text('{"step": 2, "loss": 0.4}\n')
    (root / "in").mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "in" / "x.png")
    x = np.random.default_rng(0).random((16, 8, 8)).astype(np.float32)
    y = np.arange(16) % 4
    np.savez(root / "nan.npz", x_train=np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x), y_train=y)
    np.savez(root / "range.npz", x_train=np.linspace(0, 300, x.size, dtype=np.float32).reshape(x.shape), y_train=y)
    np.savez(root / "intrange.npz", x_train=np.linspace(-5, 300, x.size).reshape(x.shape).astype(np.int16), y_train=y)
    np.savez(root / "neglabel.npz", x_train=x, y_train=y - 1)
    np.savez(root / "fraclabel.npz", x_train=x, y_train=y + 0.5)
    (root / "trunc.npz").write_bytes((root / "nan.npz").read_bytes()[:100])
    (root / "recipe.yaml").write_text(recipe().replace("{root}", str(root)))
    write_split_folder(root / "testonly", {"train": ("buildings", "forest"), "test": ("buildings", "forest", "sea")})
    return {"root": root, "afile": root / "afile", "run": run, "broken": broken, "teacher": TEACHER,
            "recipe": root / "recipe.yaml"}


def _fill(text: str, world) -> str:
    for k, v in world.items():
        text = text.replace("{" + k + "}", str(v))
    return text


def _hashes(*folders: Path) -> dict:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for f in folders for p in sorted(Path(f).rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line(case, world, capsys):
    for rel, text in case.files.items():
        path = world["root"] / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_fill(text, world))
    kept = [world["run"], world["broken"], world["teacher"]]
    before = _hashes(*kept)
    torch.set_num_threads(1)
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # library deprecations, not this project's output
        warnings.simplefilter("ignore", FutureWarning)
        code = cli([_fill(a, world) for a in case.argv])
    err = capsys.readouterr().err
    lines = err.strip("\n").splitlines()
    assert code != 0, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert _fill(case.expect, world) in lines[0], lines[0]
    assert lines[0].startswith("distill "), lines[0]
    assert _hashes(*kept) == before, "an existing run folder changed"


def test_campaign_size():
    assert len(CASES) >= 30
    assert {c.argv[0] for c in CASES} >= {"sample", "eval", "bench", "translate", "lab", "doctor", "run"}


# ---------------------------------------------------------------- damaged checkpoints, in the API


def test_resume_falls_back_past_damaged_checkpoint(tmp_path):
    good = _save_tiny_checkpoint(tmp_path, 1)
    bad = _save_tiny_checkpoint(tmp_path, 2)
    (bad / "optimizer.pt").write_bytes(b"\x00garbage")
    with pytest.warns(UserWarning, match=r"checkpoint-2[/\\]optimizer.pt: damaged state file"):
        assert resolve_resume(tmp_path, "latest") == good
    bad3 = _save_tiny_checkpoint(tmp_path, 3)
    (bad3 / "state.json").write_text('{"no_step": 1}')
    with pytest.warns(UserWarning) as caught:
        assert resolve_resume(tmp_path, "latest") == good
    assert [("no integer 'step'" in str(w.message), "optimizer.pt" in str(w.message)) for w in caught] == \
        [(True, False), (False, True)]  # newest first: checkpoint-3, then checkpoint-2


def test_resume_all_damaged_or_explicit_damaged_is_one_line(tmp_path):
    bad = _save_tiny_checkpoint(tmp_path, 4)
    (bad / "G.safetensors").write_bytes(b"xx")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # all damaged: the one error, no warnings besides
        with pytest.raises(DistillError, match=f"{tmp_path}: no readable checkpoint") as e:
            resolve_resume(tmp_path, "latest")
    assert "\n" not in str(e.value)
    with pytest.raises(DistillError, match=r"G.safetensors: damaged safetensors file") as e:
        resolve_resume(tmp_path, str(bad))
    assert "\n" not in str(e.value)
    assert resolve_resume(tmp_path / "empty", "latest") is None  # nothing to resume: start fresh


def test_load_checkpoint_corrupt_file_is_one_line(tmp_path):
    path = _save_tiny_checkpoint(tmp_path, 1)
    net, opt = torch.nn.Linear(3, 2), None
    opt = torch.optim.Adam(net.parameters())
    assert load_checkpoint(path, {"G": net}, {"optimizer": opt})["step"] == 1
    (path / "optimizer.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DistillError, match=r"optimizer.pt: cannot load") as e:
        load_checkpoint(path, {"G": net}, {"optimizer": opt})
    assert "\n" not in str(e.value)
    (path / "G.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(DistillError, match=r"G.safetensors: cannot load"):
        load_checkpoint(path, {"G": torch.nn.Linear(3, 2)}, {})
    (path / "state.json").write_text("[")
    with pytest.raises(DistillError, match="state.json: not readable JSON"):
        load_checkpoint(path, {}, {})


# ---------------------------------------------------------------- bad data values, in the loaders


def test_label_outside_num_classes(tmp_path):
    from distill.config import DataConfig
    from distill.data import load_images

    np.savez(tmp_path / "a.npz", x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.array([0, 1, 2, 12]))
    cfg = DataConfig(source=str(tmp_path / "a.npz"), resolution=8)
    with pytest.raises(DataError, match=r"a.npz\[y_train\]: label 12 outside \[0, 10\)"):
        load_images(cfg, num_classes=10)
    assert load_images(cfg).num_classes == 13


def test_float_ranges_are_read_as_documented(tmp_path):
    from distill.data.pixels import to_uint8

    assert to_uint8(np.array([0.0, 1.0]), "x").tolist() == [0, 255]  # [0, 1]
    assert to_uint8(np.array([-1.0, 0.0, 1.0]), "x").tolist() == [0, 128, 255]  # [-1, 1]
    assert to_uint8(np.array([0.0, 200.4]), "x").tolist() == [0, 200]  # [0, 255]
    with pytest.raises(DataError, match=r"f.npz\[k\]: float pixel values range over \[-2, 1\]"):
        to_uint8(np.array([-2.0, 1.0]), "f.npz[k]")
    with pytest.raises(DataError, match="non-finite"):
        to_uint8(np.array([np.inf, 1.0]), "f.npz[k]")


@pytest.mark.parametrize("values, msg", [(np.nan, "1 non-finite pixel values"), (9.0, "float pixel values range over")])
def test_translate_npz_bad_values_name_file_and_key(tmp_path, values, msg):
    from distill.translate.config import TranslateDataConfig
    from distill.translate.data import load_translation

    a = np.random.default_rng(0).random((2, 8, 8, 3)).astype(np.float32) * 2 - 1
    b = a.copy()
    b[0, 0, 0, 0] = values
    np.savez(tmp_path / "t.npz", trainA=a, trainB=b)
    cfg = TranslateDataConfig(source=str(tmp_path / "t.npz"), load_size=8, crop_size=8)
    with pytest.raises(DataError, match=rf"t.npz:trainB: {msg}") as e:
        load_translation(cfg)
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- damaged image folders, readings with a notice


def test_empty_class_folder_is_left_out_with_a_notice(tmp_path):
    from distill.config import DataConfig
    from distill.data import load_images

    root = write_class_folder(tmp_path / "classes", ("buildings", "sea"))
    (root / "forest").mkdir()
    (root / "forest" / "notes.txt").write_text("not an image\n")
    with pytest.warns(UserWarning) as rec:
        data = load_images(DataConfig(source=str(root), resolution=8, channels=3))
    ours = [str(w.message) for w in rec if "hold no images" in str(w.message)]
    assert ours == [f"{root}: class folder(s) forest hold no images and are left out of the classes"]
    assert data.class_names == ["buildings", "sea"] and data.num_classes == 2


def test_grey_and_rgba_images_in_an_rgb_folder_convert_silently(tmp_path):
    """A grey (L), grey+alpha, palette or RGBA image among RGB ones: converted to RGB with no warning at all
    (PyTorch's 'array is not writable' was one); any size, 4 px included (read as (H, W, C), never guessed)."""
    from PIL import Image

    from distill.config import DataConfig
    from distill.data import load_images

    root = write_class_folder(tmp_path / "mixed", ("buildings", "sea"), size=(4, 4))
    grey = np.full((4, 4), 77, np.uint8)
    Image.fromarray(grey, "L").save(root / "sea" / "grey.png")
    Image.fromarray(np.dstack([grey, grey, grey, np.full_like(grey, 255)]), "RGBA").save(root / "sea" / "rgba.png")
    Image.fromarray(grey, "L").convert("LA").save(root / "sea" / "la.png")
    Image.fromarray(grey, "L").convert("P").save(root / "buildings" / "p.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_images(DataConfig(source=str(root), resolution=4, channels=3))
    assert data.images.shape == (12, 3, 4, 4) and data.images.dtype == torch.uint8
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    for name in ("sea/grey.png", "sea/rgba.png", "sea/la.png", "buildings/p.png"):
        assert (data.images[files.index(name)] == 77).all(), name
    red = data.images[files.index("buildings/0.png")]
    assert red[0].float().mean() > red[2].float().mean() + 100  # RGB channels kept in order at 4 x 4 px


def test_unconditional_ddpm_teacher_with_labelled_data_trains_unconditional_student(tmp_path):
    """A teacher in the DDPMPipeline layout of the Hub's pixel teachers (an unconditional UNet2DModel, as
    google/ddpm-cifar10-32) with labelled data (digits): the labels are dropped with one notice and the
    student is unconditional, as with an unlabelled folder."""
    from diffusers import DDPMPipeline, DDPMScheduler, DiffusionPipeline, UNet2DModel

    from distill.config import recipe_from_dict
    from distill.distillation.loop import train_distill

    from .test_distill import distill_recipe_dict

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                       norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"))
    teacher = tmp_path / "ddpm-teacher"
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=1000)).save_pretrained(str(teacher))
    r = distill_recipe_dict(tmp_path, str(teacher), max_steps=2, checkpoint_every=2)
    assert r["data"]["source"] == "digits"  # labelled
    with pytest.warns(UserWarning, match="the teacher is unconditional; the labels of digits are not used") as rec:
        run_dir = train_distill(recipe_from_dict(r))
    assert sum("teacher is unconditional" in str(w.message) for w in rec) == 1
    pipe = DiffusionPipeline.from_pretrained(str(run_dir))
    assert pipe.unet.config.num_class_embeds is None and pipe.unet.config.class_embed_type is None
    x = pipe(batch_size=2, num_inference_steps=1, generator=torch.Generator().manual_seed(0), output_type="pt").images
    assert x.shape == (2, 1, 8, 8) and torch.isfinite(x).all()
