"""`distill demo MODEL [--teacher T] [--gan G] [--port P]`: a local web page that runs the teacher,
the student and the GAN side by side with each one's time per request (or, for a pix2pix / CycleGAN
checkpoint, an upload-and-translate page). Needs the `demo` extra (Gradio).

Everything that can fail is checked before the server starts: the folders (missing, not a
pipeline / GAN / translator folder, a latent pipeline), the port (in use), the extra (not
installed). The page binds to 127.0.0.1 unless --host says otherwise and is never shared."""

from __future__ import annotations

import logging
import socket

from .arguments import positive_int

HELP = "a local web page: teacher, student and GAN side by side, timed (pip install -e \".[demo]\")"
INSTALL = 'pip install -e ".[demo]"'
log = logging.getLogger("distill.demo")


def add_arguments(p):
    p.add_argument("model", nargs="?", default=None,
                   help="student pipeline folder or run folder; a GAN generator folder; or a pix2pix / CycleGAN "
                        "checkpoint or run folder (opens the translate page)")
    p.add_argument("--teacher", default=None, help="teacher pipeline folder (or shipped:<name>)")
    p.add_argument("--gan", default=None, help="exported GAN generator folder (task: gan), or its run folder")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=positive_int, default=7860)
    p.add_argument("--device", default="auto", help="auto (cuda when available, else cpu) | cpu | cuda[:i]")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--max-queue", type=positive_int, default=8, help="requests waiting at most (one runs at a time)")
    p.add_argument("--reverse", action="store_true", help="CycleGAN: translate with G_B (B -> A)")


def check_port(host: str, port: int) -> None:
    """Bind host:port once (as the server will, SO_REUSEADDR) and let go: a port in use fails here."""
    from ..errors import DistillError

    if port > 65535:
        raise DistillError(f"--port {port}: must be <= 65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise DistillError(f"--host {host}: cannot resolve ({e.strerror})") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            raise DistillError(f"--port {port}: cannot listen on {host}:{port} ({e.strerror or e})") from None


def resolve_device(device: str) -> str:
    import torch

    from ..errors import DistillError

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.split(":")[0] not in ("cpu", "cuda"):
        raise DistillError(f"--device '{device}': expected auto, cpu or cuda[:i]")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DistillError(f"--device {device}: no CUDA device is available")
    return device


def main(args) -> int:
    import importlib.util

    from ..diffusion.teachers import resolve_teacher_path
    from ..errors import DistillError
    from ..demo.folders import expect

    if not (args.model or args.teacher or args.gan):
        raise DistillError("nothing to show: give MODEL, --teacher and/or --gan")
    main_folder = expect(args.model, "MODEL", ("pipeline", "gan", "translator")) if args.model else None
    translating = main_folder is not None and main_folder.kind == "translator"
    if translating and (args.teacher or args.gan):
        raise DistillError(f"MODEL {args.model}: a translator checkpoint is shown alone (drop --teacher/--gan)")
    teacher = expect(resolve_teacher_path(args.teacher), "--teacher", ("pipeline",)) if args.teacher else None
    gan = expect(args.gan, "--gan", ("gan",)) if args.gan else None
    if main_folder is not None and main_folder.kind == "gan":
        if gan is not None:
            raise DistillError("MODEL is a GAN generator folder and --gan is given: give one GAN")
        gan, main_folder = main_folder, None
    device = resolve_device(args.device)
    check_port(args.host, args.port)
    if importlib.util.find_spec("gradio") is None:
        raise DistillError(f"the demo page needs Gradio, not installed: {INSTALL}")
    if not log.handlers:  # this command's lines only (not the web libraries' request logs)
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("distill demo: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)

    import torch

    from ..demo import app

    if args.threads:
        torch.set_num_threads(args.threads)
    if translating:
        from ..demo.translator import load_translator

        model = load_translator(str(main_folder.path), device, reverse=args.reverse)
        model.warm_up()
        page = app.translation_page(model)
    else:
        from ..demo.models import load_lineup

        model = load_lineup(main_folder.path if main_folder else None, teacher.path if teacher else None,
                            gan.path if gan else None, device)
        model.warm_up()
        page = app.generation_page(model)
    log.info("serving %s on http://%s:%d (Ctrl+C stops)", ", ".join(getattr(model, "paths", {"translator": 0})),
             args.host, args.port)
    try:
        app.serve(page, args.host, args.port, args.max_queue)
    except OSError as e:  # the port was taken between the check and the launch
        raise DistillError(f"--port {args.port}: {' '.join(str(e).split())}") from None
    return 0
