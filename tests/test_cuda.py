"""CUDA checks (marker `cuda`, deselected by default; `pytest -m cuda`, or benchmarks/gpu_check.sh):
a teacher training step on CUDA matches the same step on CPU, a bf16-autocast step stays finite,
and the latency bench's CUDA-event timer and harness work on the device. Skipped without CUDA."""

import copy

import pytest
import torch

from distill.diffusion.recipe import TeacherConfig
from distill.diffusion.denoiser import Denoiser
from distill.diffusion.teachers import build_noise_scheduler, build_unet2d

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _teacher():
    torch.manual_seed(0)
    cfg = TeacherConfig(block_out_channels=[8, 16], norm_num_groups=4)
    return build_unet2d(cfg, 8, 1, 10), build_noise_scheduler(cfg)


def _batch(n=8):
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(n, 1, 8, 8, generator=g) * 2 - 1
    return x0, torch.randn(x0.shape, generator=g), torch.randint(0, 1000, (n,), generator=g), torch.arange(n) % 10


def _step(unet, sched, batch, device, autocast_dtype=None):
    """One Adam step of the teacher's loss (distill.diffusion.losses) on `device`: -> (loss, unet)."""
    unet = unet.to(device).train()
    opt = torch.optim.Adam(unet.parameters(), lr=1e-3)
    x0, noise, t, y = (b.to(device) for b in batch)
    with torch.autocast(device_type=device, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        loss = Denoiser.from_scheduler(unet, sched).loss(x0, noise, t, y).mean()
    loss.backward()
    opt.step()
    return loss.detach().float().cpu(), unet


def test_teacher_step_on_cuda_matches_cpu():
    unet, sched = _teacher()
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    loss_cpu, u_cpu = _step(copy.deepcopy(unet), sched, _batch(), "cpu")
    loss_gpu, u_gpu = _step(copy.deepcopy(unet), sched, _batch(), "cuda")
    assert loss_gpu == pytest.approx(float(loss_cpu), rel=1e-3, abs=1e-5)
    for (name, a), b in zip(u_cpu.named_parameters(), u_gpu.parameters()):
        torch.testing.assert_close(b.detach().cpu(), a.detach(), rtol=1e-3, atol=1e-4, msg=name)


def test_bf16_autocast_step_is_finite():
    unet, sched = _teacher()
    loss, u = _step(unet, sched, _batch(), "cuda", autocast_dtype=torch.bfloat16)
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p).all() for p in u.parameters())


def test_cuda_event_timer_measures_device_work():
    from distill.bench.timing import CudaEventTimer, make_timer

    timer = make_timer("cuda")
    assert isinstance(timer, CudaEventTimer)
    a = torch.randn(2048, 2048, device="cuda")
    small = timer.measure(lambda: a @ a)[1]
    big = timer.measure(lambda: [a @ a for _ in range(20)])[1]
    assert 0 < small < big  # seconds of GPU time, growing with the work queued


def test_latency_bench_runs_on_cuda(tmp_path):
    from distill.bench import BenchConfig, run_benchmark
    from distill.diffusion.pipelines import DistillPipeline
    from distill.diffusion.sampling import make_scheduler

    unet, sched = _teacher()
    DistillPipeline(unet=unet, scheduler=make_scheduler("ddim", sched.config)).save_pretrained(str(tmp_path / "t"))
    cfg = BenchConfig(teacher=str(tmp_path / "t"), batch_sizes=[2], teacher_steps=[1, 2], device="cuda",
                      dtype="bf16", warmup=1, repeats=3, profile_repeats=1)
    res = run_benchmark(cfg, progress=False)
    assert not [r for r in res.rows if "error" in r]
    assert len(res.rows) == 2 and all(r["median_s"] > 0 for r in res.rows)
