"""`train.mixed_precision: auto`: bf16 where the device runs it natively, fp32 elsewhere (probe mocked)."""

import warnings

import pytest

from distill.engine import hardware


@pytest.fixture
def cpu(monkeypatch):
    """A CPU-only machine whose /proc/cpuinfo flags the test sets."""
    monkeypatch.setattr(hardware.torch.cuda, "is_available", lambda: False)
    flags = set()
    monkeypatch.setattr(hardware, "cpu_flags", lambda: flags)
    return flags


def test_auto_bf16_with_avx512_bf16(cpu, capsys):
    cpu.update({"avx2", "avx512f", "avx512_bf16"})
    assert hardware.resolve_mixed_precision("auto") == "bf16"
    out = capsys.readouterr().out.strip()
    assert out == "train.mixed_precision=auto: bf16 (CPU has avx512_bf16)"


def test_auto_bf16_with_amx(cpu, capsys):
    cpu.update({"avx2", "amx_bf16"})
    assert hardware.resolve_mixed_precision("auto") == "bf16"
    assert "amx_bf16" in capsys.readouterr().out


def test_auto_fp32_without_native_bf16(cpu, capsys):
    cpu.update({"avx2", "fma"})
    assert hardware.resolve_mixed_precision("auto") == "no"
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "auto: fp32" in out and "neither avx512_bf16 nor amx_bf16" in out


def test_auto_fp32_without_cpuinfo(cpu, capsys):  # not Linux: no flags known
    assert hardware.resolve_mixed_precision("auto") == "no"
    assert "unknown" in capsys.readouterr().out


def test_explicit_bf16_warns_without_native(cpu):
    cpu.add("avx2")
    with pytest.warns(UserWarning, match="slower than fp32") as rec:
        assert hardware.resolve_mixed_precision("bf16") == "bf16"
    assert len(rec) == 1 and "\n" not in str(rec[0].message)


def test_explicit_bf16_silent_with_native(cpu):
    cpu.add("avx512_bf16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert hardware.resolve_mixed_precision("bf16") == "bf16"
        assert hardware.resolve_mixed_precision("no") == "no"


def test_cuda_probe(monkeypatch, capsys):
    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    monkeypatch.setattr(hardware.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(hardware.torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(hardware.torch.cuda, "get_device_name", lambda i=0: "GPU-X")
    monkeypatch.setattr(hardware.torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert hardware.resolve_mixed_precision("auto") == "bf16"
    assert "GPU-X supports bf16" in capsys.readouterr().out
    monkeypatch.setattr(hardware.torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert hardware.resolve_mixed_precision("auto") == "no"


def test_cpu_flags_parses_cpuinfo(monkeypatch, tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu avx2 avx512_bf16\n")
    real = hardware.Path
    monkeypatch.setattr(hardware, "Path", lambda p: real(f) if p == "/proc/cpuinfo" else real(p))
    assert {"avx2", "avx512_bf16"} <= hardware.cpu_flags()


def test_make_accelerator_gets_resolved_value(cpu, tmp_path, capsys):
    """The accelerator gets the resolved value; the recipe section keeps "auto"."""
    from distill.config import LoopConfig
    from distill.engine.accelerator import make_accelerator

    from accelerate.state import AcceleratorState

    cpu.add("avx512_bf16")
    tc = LoopConfig(mixed_precision="auto")
    AcceleratorState._reset_state(True)  # accelerate keeps one process-wide state (mixed precision)
    try:
        used = make_accelerator(tc, tmp_path).mixed_precision
    finally:
        AcceleratorState._reset_state(True)
    assert used == "bf16" and tc.mixed_precision == "auto"
    assert "auto: bf16" in capsys.readouterr().out


def test_recipe_accepts_auto(tmp_path):
    from distill.config import load_recipe

    r = load_recipe("recipes/mnist.yaml")
    assert r.train.mixed_precision == "auto"


def test_run_dumps_auto_and_logs_what_was_used(cpu, tmp_path, capsys):
    """recipe.yaml says what the user asked (auto); metrics.jsonl's step-0 row what was used."""
    import yaml

    from distill.config import recipe_from_dict
    from distill.diffusion.train import train_teacher
    from distill.engine.run_dir import read_metrics

    from .conftest import tiny_recipe_dict

    cpu.add("avx2")  # no native bf16: auto -> fp32
    run_dir = train_teacher(recipe_from_dict(tiny_recipe_dict(tmp_path, max_steps=1, mixed_precision="auto")))
    assert yaml.safe_load((run_dir / "recipe.yaml").read_text())["train"]["mixed_precision"] == "auto"
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert rows[0]["step"] == 0 and rows[0]["mixed_precision"] == "no"
    assert "train.mixed_precision=auto: fp32 (no)" in capsys.readouterr().out


def test_cpu_model_reads_cpuinfo_else_platform(monkeypatch):
    """cpu_model: the 'model name' line of /proc/cpuinfo; without the file, platform's answer (never an error)."""
    monkeypatch.setattr(hardware.Path, "read_text", lambda self: "processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t: avx2\n")
    assert hardware.cpu_model() == "Test CPU 9000"

    def missing(self):
        raise OSError("no /proc")

    monkeypatch.setattr(hardware.Path, "read_text", missing)
    monkeypatch.setattr("platform.processor", lambda: "")
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    assert hardware.cpu_model() == "x86_64"


# ---------------------------------------------------------------- unset: accelerate's setting, then auto


def test_unset_takes_accelerate_setting_then_auto(cpu, monkeypatch, capsys):
    cpu.add("avx512_bf16")
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert hardware.choose_mixed_precision(None) == "fp16"
        monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "BF16")  # accelerate lower-cases it too
        assert hardware.choose_mixed_precision(None) == "bf16"
        monkeypatch.delenv("ACCELERATE_MIXED_PRECISION")
        assert hardware.choose_mixed_precision(None) == "bf16"  # no launcher setting: auto
    assert "auto: bf16" in capsys.readouterr().out
    cpu.discard("avx512_bf16")
    assert hardware.choose_mixed_precision(None) == "no"


@pytest.mark.parametrize("asked,launcher,used", [("no", "bf16", "no"), ("bf16", "no", "bf16"), ("auto", "bf16", "no")])
def test_recipe_value_against_launcher_is_used_with_one_warning(cpu, monkeypatch, asked, launcher, used):
    cpu.add("avx2")
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", launcher)
    with pytest.warns(UserWarning, match="not accelerate's mixed_precision=") as rec:
        assert hardware.choose_mixed_precision(asked, notice=None) == used
    ours = [w for w in rec if "not accelerate's" in str(w.message)]
    assert len(ours) == 1 and "\n" not in str(ours[0].message)
    assert f"train.mixed_precision={asked} ({used})" in str(ours[0].message)


def test_recipe_value_agreeing_with_launcher_is_silent(cpu, monkeypatch):
    cpu.add("avx512_bf16")
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert hardware.choose_mixed_precision("bf16") == "bf16"
        assert hardware.choose_mixed_precision("auto", notice=None) == "bf16"


def test_unset_recipe_trains_in_accelerates_bf16(cpu, monkeypatch, tmp_path):
    """ACCELERATE_MIXED_PRECISION=bf16 (what `accelerate launch --mixed_precision bf16` sets) on a CPU where
    auto picks fp32: the tiny teacher trains in bf16 (step-0 row), recipe.yaml keeps the key unset."""
    import yaml

    from distill.config import recipe_from_dict
    from distill.diffusion.train import train_teacher
    from distill.engine.run_dir import read_metrics

    from .conftest import tiny_recipe_dict

    cpu.add("avx2")  # auto would be fp32 here
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    recipe = recipe_from_dict(tiny_recipe_dict(tmp_path, max_steps=1))
    assert recipe.train.mixed_precision is None
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)  # accelerate keeps one process-wide state (mixed precision)
    try:
        with pytest.warns(UserWarning, match="slower than fp32"):  # bf16 emulated on this (mocked) CPU: said, used
            run_dir = train_teacher(recipe)
    finally:
        AcceleratorState._reset_state(True)
    assert yaml.safe_load((run_dir / "recipe.yaml").read_text())["train"]["mixed_precision"] is None
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert rows[0]["step"] == 0 and rows[0]["mixed_precision"] == "bf16"
