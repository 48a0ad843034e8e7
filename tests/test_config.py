import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from distill.config import RecipeBase, apply_override, dump_recipe, load_recipe, recipe_from_dict
from distill.errors import RecipeError

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path, data, name="r.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return p


def test_shipped_recipes_parse():
    from pathlib import Path

    from distill.tasks import recipe_class

    for path in sorted(Path("recipes").glob("*.yaml")):
        r = load_recipe(path)
        assert isinstance(r, RecipeBase) and type(r) is recipe_class(r.task), path


def test_a_key_the_task_does_not_use_is_rejected(tmp_path):
    """One recipe class per task: a teacher recipe has no distill section, a distillation recipe no
    teacher section, and the resolved recipe dumps only the task's own sections."""
    p = write(tmp_path, {"task": "teacher", "distill": {"teacher": "x"}})
    with pytest.raises(RecipeError, match="unknown key 'distill'"):
        load_recipe(p)
    r = load_recipe("recipes/digits.yaml")
    dump_recipe(r, tmp_path / "resolved.yaml")
    assert set(yaml.safe_load((tmp_path / "resolved.yaml").read_text())) == {
        "task", "name", "output_dir", "data", "distill", "discriminator", "dmd", "consistency", "experimental", "train", "eval",
        "report"}


@pytest.mark.parametrize("override,key", [
    ("train.batch_size=0", "train.batch_size"), ("train.learning_rate=-1.0", "train.learning_rate"),
    ("train.max_steps=-5", "train.max_steps"), ("data.limit=0", "data.limit"), ("eval.steps=[]", "eval.steps"),
    ("eval.steps=[1, 0]", "eval.steps[1]"), ("train.ema_decay=1.0", "train.ema_decay"),
    ("distill.student_timesteps=[249, 999]", "distill.student_timesteps"), ("distill.timestep_weights=[1, 1]",
    "distill.timestep_weights"), ("discriminator.t_min=600", "discriminator.t_min"), ("train.learning_rate=.nan", "train.learning_rate")])
def test_ranges_and_cross_field_checks(override, key):
    with pytest.raises(RecipeError, match=re.escape(f"recipes/digits.yaml: key '{key}'")):
        load_recipe("recipes/digits.yaml", [override])


def test_unknown_key_names_file_and_key(tmp_path):
    p = write(tmp_path, {"task": "teacher", "train": {"lrr": 1}})
    with pytest.raises(RecipeError, match=r"r\.yaml: unknown key 'train\.lrr'"):
        load_recipe(p)


def test_unknown_section(tmp_path):
    p = write(tmp_path, {"task": "teacher", "trian": {}})
    with pytest.raises(RecipeError, match="unknown key 'trian'"):
        load_recipe(p)


@pytest.mark.parametrize("key,value", [("train.max_steps", "ten"), ("train.max_steps", 1.5), ("train.learning_rate", "fast"),
                                       ("teacher.block_out_channels", 3), ("teacher.prediction_type", "noise"),
                                       ("teacher.attention", "yes")])
def test_wrong_type_rejected(tmp_path, key, value):
    sec, k = key.split(".")
    p = write(tmp_path, {"task": "teacher", sec: {k: value}})
    with pytest.raises(RecipeError, match=f"'{key}'"):
        load_recipe(p)


def test_missing_required(tmp_path):
    p = write(tmp_path, {"name": "x"})
    with pytest.raises(RecipeError, match="missing required key 'task'"):
        load_recipe(p)


def test_overrides_and_types(tmp_path):
    p = write(tmp_path, {"task": "teacher"})
    r = load_recipe(p, ["train.learning_rate=1e-4", "train.max_steps=7", "eval.steps=[1, 2]", "data.limit=null",
                        "teacher.attention=true"])
    assert r.train.learning_rate == 1e-4 and r.train.max_steps == 7 and r.eval.steps == [1, 2]
    assert r.data.limit is None and r.teacher.attention is True
    with pytest.raises(RecipeError, match="unknown key 'train.nope'"):
        load_recipe(p, ["train.nope=1"])
    with pytest.raises(RecipeError, match="section.key=value"):
        apply_override({}, "train.max_steps")


def test_bare_no_is_the_string_for_choices(tmp_path):
    """`train.mixed_precision=no` (accelerate's spelling) reaches YAML as false; the choice is "no"."""
    p = write(tmp_path, {"task": "teacher"})
    assert load_recipe(p, ["train.mixed_precision=no"]).train.mixed_precision == "no"
    with pytest.raises(RecipeError, match="must be one of"):
        load_recipe(p, ["train.mixed_precision=yes"])


def test_int_accepted_for_float():
    r = recipe_from_dict({"task": "teacher", "train": {"learning_rate": 1}})
    assert isinstance(r.train.learning_rate, float)


def test_dump_roundtrip(tmp_path):
    r = load_recipe("recipes/teacher-mnist.yaml", ["train.max_steps=3"])
    dump_recipe(r, tmp_path / "resolved.yaml")
    assert load_recipe(tmp_path / "resolved.yaml") == r


def test_invalid_yaml(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("task: [unclosed\n")
    with pytest.raises(RecipeError, match="bad.yaml: not valid YAML"):
        load_recipe(p)


def test_cli_bad_recipe_one_line_no_traceback(tmp_path):
    p = write(tmp_path, {"task": "teacher", "train": {"batch_size": "big"}})
    res = subprocess.run([sys.executable, "-m", "distill.cli", "run", str(p)], capture_output=True, text=True)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "train.batch_size" in lines[0] and str(p) in lines[0]


def test_cli_unknown_task(tmp_path):
    p = write(tmp_path, {"task": "juggle"})
    res = subprocess.run([sys.executable, "-m", "distill.cli", "run", str(p)], capture_output=True, text=True)
    assert res.returncode == 2 and "unknown task 'juggle'" in res.stderr and "Traceback" not in res.stderr


def _resolved(recipe) -> dict:
    d = dataclasses.asdict(recipe)
    for k in ("name", "output_dir", "report"):
        d.pop(k)
    for k in ("checkpoint_every", "sample_every"):
        d["train"].pop(k)
    return d


@pytest.mark.parametrize("shipped,entry", [("recipes/mnist.yaml", "bf16_w999_heads_flr"),
                                           ("recipes/mnist_1step.yaml", "fsbb_nodistill_w1")])
def test_mnist_recipes_are_the_experiment_runs(shipped, entry):
    """The shipped recipe resolves to the configuration of the experiment whose results docs/results/mnist.md quotes."""
    overrides = yaml.safe_load((ROOT / "experiments/mnist/ablations.yaml").read_text())[entry]["overrides"]
    a = _resolved(load_recipe(ROOT / shipped))
    b = _resolved(load_recipe(ROOT / "recipes/mnist.yaml", overrides))
    if shipped.endswith("mnist_1step.yaml"):
        # [999] and 4 timesteps weighted [1, 0, 0, 0] draw the same random stream
        assert (a["distill"].pop("student_timesteps"), a["distill"].pop("timestep_weights")) == ([999], [])
        assert (b["distill"].pop("student_timesteps"), b["distill"].pop("timestep_weights")) == \
            ([999, 749, 499, 249], [1, 0, 0, 0])
    # the recipes ask for auto, which is bf16 on the avx512_bf16 CPU the experiments ran on in bf16
    assert (a["train"].pop("mixed_precision"), b["train"].pop("mixed_precision")) == ("auto", "bf16")
    assert a == b


@pytest.mark.parametrize("cifar,mnist", [("recipes/cifar10.yaml", "recipes/mnist.yaml"),
                                         ("recipes/cifar10_1step.yaml", "recipes/mnist_1step.yaml")])
def test_cifar10_presets_change_only_data_teacher_and_classifier(cifar, mnist):
    """A CIFAR-10 preset keeps its MNIST recipe's distillation settings (one recipe, per-data-set presets)."""
    a, b = _resolved(load_recipe(ROOT / cifar)), _resolved(load_recipe(ROOT / mnist))
    changed = {(sec, k) for sec in a if isinstance(a[sec], dict) for k in a[sec] if a[sec][k] != b[sec][k]}
    assert changed == {("data", "source"), ("distill", "teacher"), ("distill", "coverage_classifier"),
                       ("eval", "features"), ("eval", "reference_split")}


def test_cifar10_1step_is_the_experiment_run():
    """recipes/cifar10_1step.yaml resolves to the cifar10 experiment docs/results/cifar10.md quotes."""
    overrides = yaml.safe_load((ROOT / "experiments/cifar10/ablations.yaml").read_text())["fsbb_nodistill_w1"]["overrides"]
    a = _resolved(load_recipe(ROOT / "recipes/cifar10_1step.yaml"))
    b = _resolved(load_recipe(ROOT / "recipes/cifar10.yaml", overrides))
    # [999] and 4 timesteps weighted [1, 0, 0, 0] draw the same random stream
    assert (a["distill"].pop("student_timesteps"), a["distill"].pop("timestep_weights")) == ([999], [])
    assert (b["distill"].pop("student_timesteps"), b["distill"].pop("timestep_weights")) == \
        ([999, 749, 499, 249], [1, 0, 0, 0])
    assert a == b


def test_every_experiment_entry_is_a_valid_recipe():
    """Each entry of experiments/<group>/ablations.yaml applies to its group's recipe (keys exist, ranges hold)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("experiments_run", ROOT / "experiments" / "run.py")
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    assert set(run.GROUPS) == {p.parent.name for p in (ROOT / "experiments").glob("*/ablations.yaml")}
    for group, g in run.GROUPS.items():
        for name in run.entries(group):
            recipe = run.load_entry(group, name)
            assert recipe.task == "distill", (group, name)
        assert (ROOT / g["teacher_eval"]).is_file()



def test_collected_experiments_keep_runs_of_other_teacher_weights_apart(tmp_path, monkeypatch):
    """`experiments/run.py`: a rerun against other teacher weights keeps the earlier result beside it, and
    --collect tables a result with the group's teacher only if it names that teacher's weights; a result against
    other weights (a retrained teacher) goes to a table of its own with that teacher's FID."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("experiments_run", ROOT / "experiments" / "run.py")
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "ablations.yaml").write_text("a:\n  about: A\n  overrides: []\nb:\n  about: B\n  overrides: []\n")
    monkeypatch.setattr(run, "HERE", tmp_path)
    monkeypatch.setattr(run, "GROUPS", {"g": {"recipe": "recipes/digits.yaml",
                                              "teacher_eval": "distill/assets/teachers/digits/eval/eval-teacher.json"}})
    current = run.teacher_identity("shipped:digits")
    assert current["best_steps"] == 50 and len(current["weights"]) == 16
    row = {"steps": 1, "fid": 9.0, "kid": 0.1, "class_acc": 0.9, "intra_class_dist": 5.0, "real_intra_class_dist": 5.5}
    (tmp_path / "results" / "g").mkdir(parents=True)
    for name, teacher, fid in [("a", current, 7.25), ("b", {**current, "weights": "0" * 16, "best_fid": 3.5}, 8.75)]:
        res = {"name": name, "description": name.upper(), "teacher": teacher, "train_steps": 10, "train_wall_s": 60,
               "rows": [{**row, "fid": fid}]}
        run.store("g", name, res)
    run.store("g", "a", {**json.loads((tmp_path / "results" / "g" / "a.json").read_text()), "train_steps": 20})
    assert not (tmp_path / "results" / "g" / f"a@{current['weights']}.json").exists()  # same teacher: replaced
    run.store("g", "b", json.loads((tmp_path / "results" / "g" / "b.json").read_text()) | {"teacher": current})
    assert (tmp_path / "results" / "g" / f"b@{'0' * 16}.json").is_file()  # other teacher: kept beside
    (tmp_path / "results" / "g" / "b.json").unlink()
    run.collect("g")
    md = (tmp_path / "results" / "g.md").read_text()
    mine, other = md.split("Against other teacher weights")
    assert "| A | 20 | 1.0 | 7.250 |" in mine and "8.750" not in mine
    assert "shipped:digits with best FID 3.500" in other and "| B | 10 | 1.0 | 8.750 |" in other

def test_recipe_base_presets_merge_section_by_section(tmp_path):
    """`base: other.yaml` (relative to the file): the preset's sections merge key by key over the base's, lists and
    values replace; a chain of bases works; a missing base, a non-string base and a cycle are one-line errors."""
    from distill.config import load_recipe
    from distill.errors import RecipeError

    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "base.yaml").write_text(
        "task: teacher\nname: base\ndata: {source: digits, resolution: 16}\n"
        "train: {max_steps: 7, batch_size: 32, learning_rate: 0.002}\neval: {steps: [1, 2, 4]}\n")
    (tmp_path / "mid.yaml").write_text("base: shared/base.yaml\ntrain: {batch_size: 16}\n")
    (tmp_path / "top.yaml").write_text("base: mid.yaml\nname: top\neval: {steps: [8]}\n")
    r = load_recipe(tmp_path / "top.yaml", ["train.max_steps=9"])
    assert (r.name, r.data.source, r.data.resolution) == ("top", "digits", 16)
    assert (r.train.max_steps, r.train.batch_size, r.train.learning_rate) == (9, 16, 0.002)
    assert r.eval.steps == [8]
    (tmp_path / "missing.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(RecipeError, match="nowhere.yaml: recipe file not found"):
        load_recipe(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("base: [a]\n")
    with pytest.raises(RecipeError, match="key 'base'"):
        load_recipe(tmp_path / "bad.yaml")
    (tmp_path / "c1.yaml").write_text("base: c2.yaml\n")
    (tmp_path / "c2.yaml").write_text("base: c1.yaml\n")
    with pytest.raises(RecipeError, match="cycle"):
        load_recipe(tmp_path / "c1.yaml")
