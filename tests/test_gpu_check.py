"""benchmarks/gpu_check.sh: the --dry-run wiring on CPU writes every part's JSON and markdown, and
without a CUDA GPU (and without --dry-run) the script stops at once with a one-line message."""

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def _run(*args, **env):
    e = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=e, capture_output=True, text=True, timeout=300)


def test_dry_run_writes_json_and_markdown(tmp_path):
    r = _run("--dry-run", GPU_CHECK_OUT=str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    lat = json.loads((tmp_path / "latency-digits-fp32-cl_off-compile_off.json").read_text())
    assert lat["rows"] and all(row["median_s"] > 0 for row in lat["rows"])
    sd = json.loads((tmp_path / "sd15-1step-latency.json").read_text())
    assert sd["dry_run"] and {row["stage"] for row in sd["rows"]} == {"text_encoder", "unet", "vae_decode", "pipeline"}
    assert (tmp_path / "cuda-tests.xml").is_file()  # the cuda-marked tests were selected (and skipped on CPU)
    summary = (tmp_path / "summary.md").read_text()
    assert "Failed parts: none" in summary and "| batch | stage |" in summary and "| teacher |" in summary


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_without_cuda_fails_fast(tmp_path):
    r = _run(GPU_CHECK_OUT=str(tmp_path / "out"))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "gpu_check.sh: error: no CUDA GPU visible (torch.cuda.is_available() is False); "
        "run with --dry-run to check the wiring on CPU"]
    assert not (tmp_path / "out").exists()
