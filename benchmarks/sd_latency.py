"""End-to-end 1-step latency of a Stable Diffusion 1.5-architecture pipeline at 512x512, built from
its configuration with random weights (no download): the measured cost is the architecture's,
the images are noise.

    PYTHONPATH=. python benchmarks/sd_latency.py --device cuda --dtype fp16 --batch-sizes 1 4
    PYTHONPATH=. python benchmarks/sd_latency.py --dry-run      # tiny sizes on CPU, wiring only

Pieces (diffusers StableDiffusionPipeline): UNet2DConditionModel and AutoencoderKL with SD 1.5's
configuration (runwayml/stable-diffusion-v1-5 unet/ and vae/ config.json), CLIPTextModel with
CLIP ViT-L/14's text configuration, and a locally built byte-level CLIP tokenizer
(distill.sd.tiny.write_tokenizer, 77 tokens). One denoising step at t = 999 (LCMScheduler,
trailing spacing), no classifier-free guidance (a distilled 1-step student, as SD-Turbo).

Timed with CUDA events on CUDA (wall clock on CPU, distill.bench.timing.make_timer), for each batch:
  text_encoder  CLIP text encoder forward on the tokenized prompts
  unet          one UNet forward at 64x64x4 latents (512 / 8)
  vae_decode    AutoencoderKL.decode of the latents to 512x512 images
  pipeline      the user's call, `pipe(prompt, num_inference_steps=1, guidance_scale=0, output_type="pt")`
Writes <out>/<name>.json and <name>.md (median / p90 ms, images/s).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from distill.bench.timing import make_timer, run_timed, summarize  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

# SD 1.5 (runwayml/stable-diffusion-v1-5): unet/config.json, vae/config.json; text: CLIP ViT-L/14
SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280, 1280),
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                 cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32)
SD15_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
                block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32, scaling_factor=0.18215)
SD15_TEXT = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                 max_position_embeddings=77, projection_dim=768, hidden_act="quick_gelu")
# --dry-run: the same classes, small enough for a CPU in seconds (64x64 images, 8x8x4 latents)
TINY_UNET = dict(SD15_UNET, sample_size=8, layers_per_block=1, block_out_channels=(32, 64, 64, 64),
                 cross_attention_dim=32, attention_head_dim=2, norm_num_groups=8)
TINY_VAE = dict(SD15_VAE, layers_per_block=1, sample_size=64, block_out_channels=(8, 16, 16, 16), norm_num_groups=8)
TINY_TEXT = dict(SD15_TEXT, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                 projection_dim=32)


def build_pipeline(folder: Path, tiny: bool, seed: int = 0):
    """A StableDiffusionPipeline with SD 1.5's architecture (or the tiny variant), random weights."""
    from diffusers import AutoencoderKL, LCMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from distill.sd.tiny import write_tokenizer

    tok = write_tokenizer(folder / "tokenizer", max_length=77)
    v = len(tok)  # 514: 256 bytes, 256 end-of-word bytes, BOS, EOS
    torch.manual_seed(seed)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=v, bos_token_id=v - 2, eos_token_id=v - 1, pad_token_id=v - 1,
                                        **(TINY_TEXT if tiny else SD15_TEXT)))
    unet = UNet2DConditionModel(**(TINY_UNET if tiny else SD15_UNET))
    vae = AutoencoderKL(**(TINY_VAE if tiny else SD15_VAE))
    sched = LCMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1,
                         timestep_spacing="trailing")
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def components(pipe, batch: int, device: str, dtype, seed: int = 0) -> dict:
    """name -> a call timing that stage alone, on inputs of the shapes the pipeline feeds it."""
    ids = pipe.tokenizer(["a photograph of an astronaut riding a horse"] * batch, padding="max_length",
                         max_length=pipe.tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids
    ids = ids.to(device)
    with torch.no_grad():
        emb = pipe.text_encoder(ids)[0]
    c, s = pipe.unet.config.in_channels, pipe.unet.config.sample_size
    g = torch.Generator(device="cpu").manual_seed(seed)
    lat = torch.randn(batch, c, s, s, generator=g).to(device=device, dtype=dtype)
    t = torch.tensor(999, device=device)
    k = pipe.vae.config.scaling_factor
    prompts = ["a photograph of an astronaut riding a horse"] * batch

    @torch.no_grad()
    def text_encoder():
        return pipe.text_encoder(ids)[0]

    @torch.no_grad()
    def unet():
        return pipe.unet(lat, t, encoder_hidden_states=emb).sample

    @torch.no_grad()
    def vae_decode():
        return pipe.vae.decode(lat / k).sample

    def pipeline():
        return pipe(prompts, num_inference_steps=1, guidance_scale=0.0, output_type="pt",
                    generator=torch.Generator(device="cpu").manual_seed(seed)).images

    return {"text_encoder": text_encoder, "unet": unet, "vae_decode": vae_decode, "pipeline": pipeline}


def environment(device: str) -> dict:
    import diffusers
    import transformers

    env = {"device": device, "torch": torch.__version__, "diffusers": diffusers.__version__,
           "transformers": transformers.__version__, "python": platform.python_version()}
    if device.startswith("cuda"):
        env.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda)
    return env


def markdown(result: dict) -> str:
    lines = [f"# SD 1.5-architecture 1-step latency ({result['resolution']}x{result['resolution']}, "
             f"{result['dtype']}, {result['env'].get('gpu', result['device'])})", "",
             "| batch | stage | median ms | p90 ms | images/s |", "|---:|---|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['batch']} | {r['stage']} | {1e3 * r['median_s']:.2f} | {1e3 * r['p90_s']:.2f} | "
                     f"{r['images_per_s']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="fp16", choices=list(DTYPES))
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (CPU runs)")
    p.add_argument("--channels-last", action="store_true", help="UNet and VAE in channels-last memory format")
    p.add_argument("--out", default=None, help="output folder (default: benchmarks/results; --dry-run: a temp folder)")
    p.add_argument("--name", default="sd15-1step-latency", help="file stem")
    p.add_argument("--dry-run", action="store_true", help="tiny sizes, CPU, fp32, 1 repeat: check the wiring")
    a = p.parse_args(argv)
    if a.dry_run:
        a.device, a.dtype, a.warmup, a.repeats, a.batch_sizes = "cpu", "fp32", 1, 1, a.batch_sizes[:1]
        a.out = a.out or tempfile.mkdtemp(prefix="sd-latency-")
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("benchmarks/sd_latency.py: error: --device cuda but no CUDA GPU is visible (use --dry-run on CPU)",
              file=sys.stderr)
        return 2
    if min(a.batch_sizes) < 1 or a.warmup < 1 or a.repeats < 1 or a.threads < 1:
        print("benchmarks/sd_latency.py: error: --batch-sizes, --warmup, --repeats and --threads must be >= 1",
              file=sys.stderr)
        return 2
    out = Path(a.out or ROOT / "benchmarks" / "results")
    out.mkdir(parents=True, exist_ok=True)
    if a.device == "cpu":
        torch.set_num_threads(a.threads)
    dtype = DTYPES[a.dtype]
    with tempfile.TemporaryDirectory() as tmp:
        pipe = build_pipeline(Path(tmp), tiny=a.dry_run).to(a.device, dtype)
    if a.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    timer = make_timer(a.device)  # CudaEventTimer on CUDA
    rows = []
    for b in a.batch_sizes:
        for stage, fn in components(pipe, b, a.device, dtype).items():
            m = run_timed(fn, timer, warmup=a.warmup, repeats=a.repeats)
            st = summarize(m.samples_s, batch=b)
            rows.append({"batch": b, "stage": stage, "median_s": st.median_s, "p90_s": st.p90_s, "mean_s": st.mean_s,
                         "min_s": st.min_s, "n": st.n, "images_per_s": st.images_per_s,
                         "first_call_s": m.warmup_s[0]})
            print(f"batch {b:>3} {stage:<13} median {1e3 * st.median_s:9.2f} ms")
    res = 8 * pipe.unet.config.sample_size  # the VAE upsamples latents 8x (4 blocks)
    result = {"model": "sd15-architecture (random weights)", "resolution": res, "steps": 1, "guidance": 0.0,
              "dtype": a.dtype, "device": a.device, "channels_last": a.channels_last, "dry_run": a.dry_run,
              "warmup": a.warmup, "repeats": a.repeats, "env": environment(a.device), "rows": rows}
    (out / f"{a.name}.json").write_text(json.dumps(result, indent=1))
    (out / f"{a.name}.md").write_text(markdown(result))
    print(f"wrote {out / (a.name + '.json')}, {out / (a.name + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
