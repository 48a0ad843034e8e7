"""The Gradio pages of `distill demo` (gradio is imported here, inside the functions: the base
install imports this module without it).

  generation page   class, seed, images per request, teacher steps and guidance, student steps,
                    GAN truncation; per model its images, this request's time and the running p50;
                    "Generate continuously" re-runs with seed, seed + 1, ... and shows each model's
                    frames per second until Stop (or CONTINUOUS_S seconds)
  translation page  upload an image, translate it, the time and p50

Every request goes through one queue (concurrency 1, `max_size` waiting): two browsers take turns
instead of running the models at once. A refused value is a gr.Error shown in the page.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace

import torch

from .models import Lineup, Request, RequestError
from .translator import Translator

CONTINUOUS_S = 120.0  # a continuous run stops by itself after this long
TITLES = {"teacher": "Teacher", "student": "Student", "gan": "GAN"}


def device_line(device: str) -> str:
    from ..engine.hardware import cpu_model

    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else cpu_model()
    return (f"**Device:** {device} ({name}), {torch.get_num_threads()} torch threads. Times: the latency bench's "
            "timer (`distill bench latency`), after one warm-up call per model; p50 over the requests since the page started.")


def _gr():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    return gr


def _refused(gr, e: Exception):
    """The page's message for a refused request; one line in the terminal, no traceback."""
    text = " ".join(str(e).split()) or type(e).__name__
    logging.getLogger("distill.demo").warning("refused: %s", text)
    return gr.Error(text, print_exception=False)


def generation_page(lineup: Lineup):
    gr = _gr()
    names, lim = lineup.names, lineup.limits
    k = lineup.num_classes
    with gr.Blocks(title="distill demo", analytics_enabled=False) as page:
        gr.Markdown("# distill demo\n" + " · ".join(f"**{TITLES[n]}:** `{lineup.paths[n]}`" for n in names))
        gr.Markdown(device_line(lineup.device), elem_id="device")
        with gr.Row():
            label = gr.Number(value=0, precision=0, label=f"class (0-{k - 1})" if k else "class (unconditional)",
                              elem_id="class", interactive=bool(k))
            seed = gr.Number(value=0, precision=0, label="seed", elem_id="seed")
            batch = gr.Slider(1, lim.batch, value=1, step=1, label="images per request", elem_id="batch")
        with gr.Row():
            t_steps = gr.Slider(1, lim.teacher_steps, value=25, step=1, label="teacher steps", elem_id="teacher_steps",
                                visible="teacher" in names)
            guidance = gr.Slider(0, lim.guidance, value=1.0, step=0.5, label="teacher guidance (1: off)",
                                 elem_id="guidance", visible="teacher" in names)
            s_steps = gr.Slider(1, lineup.student_max_steps, value=1, step=1, label="student steps",
                                elem_id="student_steps", visible="student" in names)
            psi = gr.Slider(0, lim.truncation, value=1.0, step=0.05, label="GAN truncation psi (1: none)",
                            elem_id="truncation", visible="gan" in names)
        with gr.Row():
            go = gr.Button("Generate", variant="primary", elem_id="generate")
            loop = gr.Button("Generate continuously", elem_id="continuous")
            stop = gr.Button("Stop", elem_id="stop")
        images, times = [], []
        with gr.Row():
            for n in names:
                with gr.Column():
                    images.append(gr.Image(label=TITLES[n], type="numpy", interactive=False, elem_id=f"{n}_image",
                                           format="png", buttons=["download"]))
                    times.append(gr.Markdown("", elem_id=f"{n}_time"))
        fps = gr.Markdown("", elem_id="fps")
        inputs = [label, seed, batch, t_steps, s_steps, guidance, psi]

        def request(*values) -> Request:
            keys = ("label", "seed", "batch", "teacher_steps", "student_steps", "guidance", "truncation")
            return Request(**dict(zip(keys, values)))

        def answer(shots):
            return [s.image for s in shots] + [f"**{TITLES[s.name]}** {s.caption()}" for s in shots]

        def generate(*values):
            try:
                return answer(lineup.run(request(*values))) + [""]
            except (RequestError, RuntimeError) as e:
                raise _refused(gr, e) from None

        def continuous(*values):
            try:
                req = lineup.check(request(*values))
            except RequestError as e:
                raise _refused(gr, e) from None
            spent = {n: 0.0 for n in names}
            t0, frame = time.perf_counter(), 0
            while time.perf_counter() - t0 < CONTINUOUS_S:
                shots = lineup.run(replace(req, seed=(req.seed + frame) % (lineup.limits.seed + 1)))
                frame += 1
                for s in shots:
                    spent[s.name] += s.seconds
                rate = " · ".join(f"**{TITLES[n]}** {frame * req.batch / spent[n]:.1f} images/s" for n in names)
                yield answer(shots) + [f"Continuous, {frame} requests of {req.batch}: {rate}"]

        go.click(generate, inputs, images + times + [fps], concurrency_limit=1)
        running = loop.click(continuous, inputs, images + times + [fps], concurrency_limit=1)
        stop.click(None, None, None, cancels=[running], queue=False)
    return page


def translation_page(translator: Translator):
    gr = _gr()
    with gr.Blocks(title="distill demo: translate", analytics_enabled=False) as page:
        gr.Markdown(f"# distill demo: translate\n**Translator:** `{translator.path}` "
                    f"(input resized to {translator.generator.crop_size} px)")
        gr.Markdown(device_line(translator.device), elem_id="device")
        with gr.Row():
            src = gr.Image(label="input", type="numpy", sources=["upload"], elem_id="input")
            out = gr.Image(label="translation", type="numpy", interactive=False, elem_id="translator_image",
                           format="png", buttons=["download"])
        go = gr.Button("Translate", variant="primary", elem_id="generate")
        timing = gr.Markdown("", elem_id="translator_time")

        def translate(image):
            try:
                shot = translator.translate(image)
            except (RequestError, RuntimeError) as e:
                raise _refused(gr, e) from None
            return shot.image, f"**Translator** {shot.caption()}"

        go.click(translate, [src], [out, timing], concurrency_limit=1)
    return page


def serve(page, host: str, port: int, max_queue: int) -> None:
    """Launch on host:port (never shared through a tunnel), one request at a time, `max_queue` waiting."""
    page.queue(default_concurrency_limit=1, max_size=max_queue)
    page.launch(server_name=host, server_port=port, share=False, inbrowser=False, quiet=True, show_error=False,
                ssr_mode=False, footer_links=[])
