import json

import pytest
import torch
from safetensors.torch import load_file

from distill import cli
from distill.config import recipe_from_dict
from distill.engine.run_dir import read_metrics
from distill.tasks import run_task
from distill.translate.train import standalone

from .translate_fixtures import cyclegan_recipe, make_aligned, make_npz, pix2pix_recipe, tiny_images


@pytest.fixture
def aligned(tmp_path):
    return make_aligned(tmp_path / "facades-tiny")


@pytest.fixture
def npz(tmp_path):
    return make_npz(tmp_path / "tiny.npz")


def _mean(rows, key, sl):
    return sum(r[key] for r in rows[sl]) / len(rows[sl])


def test_pix2pix_steps_lower_l1_and_evaluate(tmp_path, aligned):
    d = pix2pix_recipe(tmp_path, aligned, max_steps=40, checkpoint_every=1000)
    d["train"]["learning_rate"] = 1e-3
    d["eval"]["num_samples"] = 1  # evaluate at the end
    run = run_task(recipe_from_dict(d))
    rows = read_metrics(run / "metrics.jsonl")
    assert len(rows) == 40 and {"loss_g", "loss_d", "loss_l1", "d_acc_real", "d_acc_fake", "grad_norm_g",
                                "grad_norm_d", "lr", "lr_d"} <= set(rows[0])
    assert _mean(rows, "loss_l1", slice(-5, None)) < 0.8 * _mean(rows, "loss_l1", slice(0, 5))
    assert rows[-1]["lr"] < rows[0]["lr"]  # linear decay over the second half
    ev = json.loads((run / "eval.json").read_text())
    assert {"l1", "psnr", "ssim"} <= set(ev["eval_mode"]) and ev["eval_mode"]["n"] == 6
    assert (run / "report.md").is_file() and (run / "eval-grid.png").is_file()
    assert (run / "samples" / "step-0000040.png").is_file()


def test_cyclegan_steps_lower_cycle_loss(tmp_path, npz):
    d = cyclegan_recipe(tmp_path, npz, max_steps=60, checkpoint_every=1000)
    d["train"]["learning_rate"] = 1e-3
    run = run_task(recipe_from_dict(d))
    rows = read_metrics(run / "metrics.jsonl")
    assert {"loss_cycle", "loss_idt"} <= set(rows[0])
    assert _mean(rows, "loss_cycle", slice(-10, None)) < 0.8 * _mean(rows, "loss_cycle", slice(0, 5))


@pytest.mark.parametrize("method", ["pix2pix", "cyclegan"])
def test_resume_is_exact(tmp_path, aligned, npz, method):
    make = (lambda p, **t: pix2pix_recipe(p, aligned, **t)) if method == "pix2pix" else \
        (lambda p, **t: cyclegan_recipe(p, npz, **t))
    full = run_task(recipe_from_dict(make(tmp_path / "full")))
    part = tmp_path / "part"
    run_task(recipe_from_dict(make(part, interrupt_at=3)))
    resumed = run_task(recipe_from_dict(make(part, resume_from_checkpoint="latest")))
    for f in (full / "checkpoints" / "checkpoint-6").glob("*.safetensors"):
        a, b = load_file(str(f)), load_file(str(resumed / "checkpoints" / "checkpoint-6" / f.name))
        for k in a:
            assert torch.equal(a[k], b[k]), (f.name, k)
    m_full, m_res = read_metrics(full / "metrics.jsonl"), read_metrics(resumed / "metrics.jsonl")
    assert [r["loss_g"] for r in m_full] == [r["loss_g"] for r in m_res]


def test_finetune_from_checkpoint_with_frozen_layers(tmp_path, aligned):
    src = run_task(recipe_from_dict(pix2pix_recipe(tmp_path / "src", aligned, max_steps=3)))
    d = pix2pix_recipe(tmp_path / "ft", aligned, max_steps=3)
    d["translate"].update(init_from=str(src), freeze=["model.model.1"])
    ft = run_task(recipe_from_dict(d))
    a = load_file(str(src / "checkpoints" / "checkpoint-3" / "G.safetensors"))
    b = load_file(str(ft / "checkpoints" / "checkpoint-3" / "G.safetensors"))
    assert torch.equal(a["model.model.1.model.1.weight"], b["model.model.1.model.1.weight"])  # frozen
    assert not torch.equal(a["model.model.0.weight"], b["model.model.0.weight"])  # trained on


def test_finetune_from_reference_state_dict(tmp_path, aligned):
    """A reference-code checkpoint folder (latest_net_G.pth / latest_net_D.pth, torch.save'd
    state dicts) loads with torch.load(weights_only=True) into the same architecture."""
    probe = standalone(recipe_from_dict(pix2pix_recipe(tmp_path / "probe", aligned)), "pix2pix")
    ref = tmp_path / "ref"
    ref.mkdir()
    sd_g = {k: torch.randn_like(v.float()).to(v.dtype) if v.is_floating_point() else v
            for k, v in probe.raw("G").state_dict().items()}
    torch.save(sd_g, ref / "latest_net_G.pth")
    torch.save(probe.raw("D").state_dict(), ref / "latest_net_D.pth")
    d = pix2pix_recipe(tmp_path / "ft", aligned)
    d["translate"]["init_from"] = str(ref)
    s = standalone(recipe_from_dict(d), "pix2pix")
    assert s.loaded == ["G", "D"]
    for k, v in s.raw("G").state_dict().items():
        assert torch.equal(v, sd_g[k])
    d["translate"]["init_from"] = str(ref / "latest_net_G.pth")  # a single generator file
    d["translate"]["ngf"] = 4
    from distill.errors import DistillError

    with pytest.raises(DistillError, match="do not fit"):
        standalone(recipe_from_dict(d), "pix2pix")


def test_translate_folder_and_onnx(tmp_path, aligned, capsys):
    pytest.importorskip("onnx")
    run = run_task(recipe_from_dict(pix2pix_recipe(tmp_path, aligned, max_steps=2)))
    out = tmp_path / "out"
    onnx = tmp_path / "g.onnx"
    assert cli.main(["translate", str(run), str(aligned / "test"), str(out), "--batch", "4", "--onnx", str(onnx)]) == 0
    files = sorted(out.glob("*.png"))
    assert len(files) == 6
    from PIL import Image

    assert Image.open(files[0]).size == (32, 32)
    assert onnx.is_file() and "max |onnx - torch|" in capsys.readouterr().out
    from distill.translate.infer import export_onnx, load_generator

    G, cfg = load_generator(run)
    assert export_onnx(G, cfg, tmp_path / "g2.onnx")["max_abs_diff"] < 1e-4


def test_cyclegan_onnx_reverse_and_eval(tmp_path, npz):
    pytest.importorskip("onnx")
    from distill.translate.evaluate import evaluate_checkpoint
    from distill.translate.infer import export_onnx, load_generator
    from distill.eval.classifier import classifier_path

    run = run_task(recipe_from_dict(cyclegan_recipe(tmp_path, npz, max_steps=2)))
    G, cfg = load_generator(run, reverse=True)
    assert export_onnx(G, cfg, tmp_path / "gb.onnx")["max_abs_diff"] < 1e-4
    if classifier_path("horse2zebra").is_file():
        import dataclasses

        ck = run / "checkpoints" / "checkpoint-2"
        state = json.loads((ck / "state.json").read_text())
        state["translate"]["domain_classifier"] = "horse2zebra"
        (ck / "state.json").write_text(json.dumps(state))
        ev = evaluate_checkpoint(ck)
        assert 0 <= ev["AtoB"]["domain_success"] <= 1 and 0 <= ev["AtoB"]["domain_success_real_target"] <= 1 and "kid" in ev["BtoA"] and "cycle_l1" in ev["AtoB"]


def test_cli_one_line_errors(tmp_path, capsys):
    import yaml

    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(pix2pix_recipe(tmp_path, tmp_path / "missing")))
    assert cli.main(["run", str(p)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("distill run: error:") and "\n" not in err
    assert cli.main(["translate", str(tmp_path)]) == 2


def test_recipes_parse():
    from pathlib import Path

    from distill.config import load_recipe

    root = Path(__file__).resolve().parent.parent / "recipes"
    p2p = load_recipe(root / "pix2pix-facades.yaml")
    assert p2p.task == "pix2pix" and p2p.data.direction == "BtoA" and p2p.translate.lambda_L1 == 100
    assert p2p.train.learning_rate == 2e-4 and p2p.train.adam_beta1 == 0.5 and p2p.train.lr_scheduler == "linear"
    cyc = load_recipe(root / "cyclegan-horse2zebra.yaml")
    assert cyc.task == "cyclegan" and cyc.translate.gan_mode == "lsgan" and cyc.translate.pool_size == 50


def test_bf16_steps_via_accelerate(tmp_path, aligned):
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)  # accelerate keeps one process-wide state (mixed precision)
    try:
        d = pix2pix_recipe(tmp_path, aligned, max_steps=2, mixed_precision="bf16")
        run = run_task(recipe_from_dict(d))
    finally:
        AcceleratorState._reset_state(True)
    rows = read_metrics(run / "metrics.jsonl")
    assert len(rows) == 2 and all(map(lambda r: r["loss_g"] == r["loss_g"], rows))  # finite, not NaN


@pytest.mark.parametrize("method", ["pix2pix", "cyclegan"])
def test_grad_norms_only_on_log_steps_and_do_not_change_the_update(tmp_path, aligned, npz, method):
    """Gradient norms are for the logs: computed on logging steps only, and the weights after a run
    with log_every 1 (norms every step) equal those of a run with log_every 3."""
    make = (lambda p, **t: pix2pix_recipe(p, aligned, **t)) if method == "pix2pix" else \
        (lambda p, **t: cyclegan_recipe(p, npz, **t))
    runs = {}
    for every in (1, 3):
        d = make(tmp_path / f"log{every}", max_steps=6, checkpoint_every=1000, log_every=every)
        runs[every] = run_task(recipe_from_dict(d))
    rows = read_metrics(runs[3] / "metrics.jsonl")
    assert [r["step"] for r in rows] == [3, 6] and all("grad_norm_g" in r and "grad_norm_d" in r for r in rows)
    s = standalone(recipe_from_dict(make(tmp_path / "probe", max_steps=6, log_every=3)), method)
    assert not any(k.startswith("grad_norm") for k in s.step_once(0))  # step 1: not a logging step
    assert {"grad_norm_g", "grad_norm_d"} <= set(s.step_once(2))  # step 3: logged
    for f in (runs[1] / "checkpoints" / "checkpoint-6").glob("*.safetensors"):
        a, b = load_file(str(f)), load_file(str(runs[3] / "checkpoints" / "checkpoint-6" / f.name))
        for k in a:
            assert torch.equal(a[k], b[k]), (f.name, k)


def test_old_flat_checkpoint_config_still_loads():
    """state.json of checkpoints written before the data / train split held every key in "translate"."""
    import dataclasses

    from distill.errors import DistillError
    from distill.translate.config import TranslateConfig, TranslateDataConfig, configs_from_state

    old = {**dataclasses.asdict(TranslateDataConfig(source="x.npz", crop_size=32)),
           **dataclasses.asdict(TranslateConfig(netG="unet_32")),
           "lr": 2e-4, "lr_d": None, "beta1": 0.5, "beta2": 0.999, "lr_policy": "linear", "lr_decay_fraction": 0.5,
           "lr_step_size": 50000}
    cfg, data = configs_from_state({"step": 6, "method": "pix2pix", "translate": old})
    assert cfg.netG == "unet_32" and data.crop_size == 32 and data.source == "x.npz"
    new = {"translate": dataclasses.asdict(cfg), "data": dataclasses.asdict(data)}
    assert configs_from_state(new) == (cfg, data)
    with pytest.raises(DistillError, match="unknown translate config keys"):
        configs_from_state({"translate": {**old, "bogus": 1}})


@pytest.mark.parametrize("method", ["pix2pix", "cyclegan"])
def test_run_folder_has_a_hub_card_with_the_eval_numbers(tmp_path, aligned, npz, method):
    from huggingface_hub import ModelCard

    d = (pix2pix_recipe(tmp_path, aligned, max_steps=2) if method == "pix2pix" else
         cyclegan_recipe(tmp_path, npz, max_steps=2))
    d["eval"]["num_samples"] = 1
    run = run_task(recipe_from_dict(d))
    ev = json.loads((run / "eval.json").read_text())
    card = ModelCard.load(run / "README.md")
    meta = card.data.to_dict()
    assert meta["library_name"] == "pytorch" and meta["pipeline_tag"] == "image-to-image" and method in meta["tags"]
    assert meta["distill"]["task"] == method and meta["distill"]["training_steps"] == 2
    got = {(r.metric_name, r.metric_value) for r in card.data.eval_results}
    if method == "pix2pix":
        want = {(f"{k}, A to B", round(ev["metrics"][k], 4)) for k in ("l1", "psnr", "ssim")}
    else:
        want = {(f"cycle_l1, {d}", round(ev[k]["cycle_l1"], 4)) for k, d in (("AtoB", "A to B"), ("BtoA", "B to A"))}
    assert got == want


@pytest.mark.parametrize("method", ["pix2pix", "cyclegan"])
def test_run_folder_is_the_export(tmp_path, aligned, npz, method):
    """A finished run folder loads with the generator class's own `from_pretrained` (diffusers' layout), holds the
    final weights (= the last checkpoint's), and `distill translate` reads it without any checkpoint."""
    import shutil

    from distill.translate.infer import load_generator
    from distill.translate.networks import ResnetGenerator, UnetGenerator

    d = (pix2pix_recipe(tmp_path, aligned, max_steps=3) if method == "pix2pix" else
         cyclegan_recipe(tmp_path, npz, max_steps=3))
    run = run_task(recipe_from_dict(d))
    ckpt = run / "checkpoints" / "checkpoint-3"
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    pairs = [("", False)] if method == "pix2pix" else [("", False), ("G_B", True)]
    for sub, reverse in pairs:
        cls = UnetGenerator if method == "pix2pix" else ResnetGenerator
        G = cls.from_pretrained(str(run / sub)).eval()  # not subfolder=: diffusers takes the root's weights first
        G_ckpt, _ = load_generator(ckpt, reverse=reverse)
        with torch.no_grad():
            assert torch.equal(G(x), G_ckpt(x)), sub
    assert json.loads((run / "translator.json").read_text())["method"] == method
    shutil.rmtree(run / "checkpoints")  # the export alone
    G, cfg = load_generator(run, reverse=method == "cyclegan")
    assert G.crop_size == 32 and G.in_channels == 3 and cfg.netG == d["translate"]["netG"]
    from PIL import Image

    (tmp_path / "in").mkdir()
    for k, a in enumerate(tiny_images(3, 32, seed=5)):
        Image.fromarray(a).save(tmp_path / "in" / f"{k}.png")
    extra = ["--reverse"] if method == "cyclegan" else []
    assert cli.main(["translate", str(run), str(tmp_path / "in"), str(tmp_path / "out"), *extra]) == 0
    assert len(list((tmp_path / "out").glob("*.png"))) == 3
