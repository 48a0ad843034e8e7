"""`distill demo`: the one-line errors before any server starts, the timed lineup behind the page,
and the page itself in a real headless Chromium (marked `browser`; skipped without the `demo` extra,
selenium or Chromium and its driver)."""

import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from distill.cli import main as cli

ROOT = Path(__file__).resolve().parent.parent
TEACHER = ROOT / "distill" / "assets" / "teachers" / "mnist"
GAN = ROOT / "distill" / "assets" / "gans" / "mnist"


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """A 4-step student pipeline: the MNIST teacher's network under the student's scheduler (untrained as
    a student: the page only needs a 1-4 step pipeline to run and time)."""
    from distill.diffusion.pipelines import DistillPipeline
    from distill.diffusion.sampling import student_scheduler
    from distill.diffusion.teachers import load_teacher

    t = load_teacher(str(TEACHER))
    path = tmp_path_factory.mktemp("demo") / "student"
    DistillPipeline(unet=t.unet, scheduler=student_scheduler(t.scheduler, [999, 749, 499, 249])).save_pretrained(str(path))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_line_error(capsys, rc) -> str:
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("distill demo: error:"), err
    return err


# ---------------------------------------------------------------- errors before the server starts


def test_missing_folder(tmp_path, capsys):
    err = one_line_error(capsys, cli(["demo", str(tmp_path / "nope"), "--port", str(free_port())]))
    assert "nope: not found" in err


def test_non_pipeline_folder(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a model")
    err = one_line_error(capsys, cli(["demo", str(tmp_path), "--port", str(free_port())]))
    assert "not a pipeline folder (no model_index.json)" in err


def test_teacher_must_be_a_pipeline_and_latent_pipelines_are_refused(tmp_path, capsys):
    err = one_line_error(capsys, cli(["demo", "--teacher", str(GAN)]))
    assert "--teacher" in err and "a gan folder, expected a pipeline folder" in err
    (tmp_path / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    err = one_line_error(capsys, cli(["demo", str(tmp_path)]))
    assert "StableDiffusionPipeline" in err and "not latent or text-prompted" in err


def test_port_in_use(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        err = one_line_error(capsys, cli(["demo", "--gan", str(GAN), "--port", str(port)]))
    assert f"--port {port}" in err and "in use" in err


def test_without_the_extra_says_how_to_install(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a))
    err = one_line_error(capsys, cli(["demo", "--gan", str(GAN), "--port", str(free_port())]))
    assert 'pip install -e ".[demo]"' in err


# ---------------------------------------------------------------- the lineup behind the page


def test_lineup_times_each_model_and_refuses_values_past_the_caps(student):
    from distill.demo.models import Request, RequestError, load_lineup

    lineup = load_lineup(str(student), str(TEACHER), str(GAN))
    assert lineup.names == ["teacher", "student", "gan"] and lineup.num_classes == 10
    assert lineup.student_max_steps == 4
    req = Request(label=3, seed=5, batch=2, teacher_steps=3, student_steps=1)
    first = lineup.run(req)
    assert [s.name for s in first] == ["teacher", "student", "gan"]
    for s in first:
        assert s.image.shape == (224, 2 * 224 + 2, 3)  # 28 px upscaled 8x for the page and s.image.dtype.name == "uint8"
        assert s.seconds > 0 and s.n == 1 and s.p50_s == s.seconds
    again = lineup.run(req)
    for a, b in zip(first, again):  # the seed fixes the images; the p50 runs over both requests
        assert (a.image == b.image).all()
        assert b.n == 2 and math.isclose(b.p50_s, (a.seconds + b.seconds) / 2)
    assert not (lineup.run(Request(label=3, seed=6))[2].image == lineup.run(Request(label=3, seed=5))[2].image).all()
    for bad, field in [(dict(student_steps=5), "student steps"), (dict(batch=17), "images"),
                       (dict(teacher_steps=0), "teacher steps"), (dict(guidance=float("nan")), "guidance"),
                       (dict(label=10), "class"), (dict(seed=-1), "seed"), (dict(truncation="x"), "truncation"),
                       (dict(label=1.5), "class")]:
        with pytest.raises(RequestError, match=f"^{field}: "):
            lineup.check(Request(**bad))


def test_translator_checkpoint_translates_an_upload(tmp_path):
    import numpy as np

    from distill.config import recipe_from_dict
    from distill.demo.folders import classify
    from distill.demo.models import RequestError
    from distill.demo.translator import load_translator
    from distill.tasks import run_task

    from .translate_fixtures import make_aligned, pix2pix_recipe

    run = run_task(recipe_from_dict(pix2pix_recipe(tmp_path, make_aligned(tmp_path / "pairs"), max_steps=2)))
    assert classify(run, "MODEL").kind == "translator"
    translator = load_translator(str(run))
    upload = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)  # resized to the 32 px crop
    shot = translator.translate(upload)
    assert shot.image.shape == (224, 224, 3) and shot.seconds > 0 and shot.n == 1
    assert (translator.translate(upload).image == shot.image).all()  # eval mode: the same answer
    with pytest.raises(RequestError, match="upload an image"):
        translator.translate(None)
    import shutil

    shutil.rmtree(run / "checkpoints")  # the export alone is a translator folder, translating the same
    assert classify(run, "MODEL").kind == "translator"
    assert (load_translator(str(run)).translate(upload).image == shot.image).all()


# ---------------------------------------------------------------- the page in a real browser


def _browser():
    pytest.importorskip("gradio")
    pytest.importorskip("selenium")
    chromium = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("no headless Chromium and chromedriver (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = chromium
    profile = Path(os.environ.get("TMPDIR", "/tmp")) / f"demo-chromium-{os.getpid()}-{time.time_ns()}"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1100", f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts), profile


def _wait_http(url: str, proc, timeout: float) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"distill demo exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"distill demo did not answer on {url} within {timeout:.0f} s")


def _set(drv, elem_id: str, value) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = drv.find_element(By.CSS_SELECTOR, f"#{elem_id} input[type=number]")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(str(value), Keys.TAB)


MS = re.compile(r"([\d.]+) ms this request; p50 ([\d.]+) ms over (\d+)")
FRAMES = re.compile(r"Continuous, (\d+) requests")


@pytest.mark.browser
def test_page_in_chromium(student, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    drv, profile = _browser()
    port = free_port()
    log = open(tmp_path / "demo.log", "w")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "distill.cli", "demo", str(student), "--teacher", str(TEACHER),
                             "--gan", str(GAN), "--port", str(port), "--threads", "1", "--device", "cpu"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_http(url, proc, 180)
        drv.get(url)
        wait = WebDriverWait(drv, 90)
        wait.until(lambda d: d.find_elements(By.ID, "generate"))
        assert "1 torch threads" in drv.find_element(By.ID, "device").text
        _set(drv, "class", 7)
        _set(drv, "teacher_steps", 10)
        _set(drv, "student_steps", 1)
        drv.find_element(By.ID, "generate").click()

        def timings(d):
            texts = {n: d.find_element(By.ID, f"{n}_time").text for n in ("teacher", "student", "gan")}
            found = {n: MS.search(t) for n, t in texts.items()}
            return found if all(found.values()) else False

        found = wait.until(timings)
        for n in ("teacher", "student", "gan"):
            img = drv.find_element(By.CSS_SELECTOR, f"#{n}_image img")
            assert img.get_attribute("src") and drv.execute_script("return arguments[0].naturalWidth", img) == 224
        ms = {n: float(m.group(1)) for n, m in found.items()}
        assert all(v > 0 for v in ms.values()) and all(m.group(3) == "1" for m in found.values()), found
        assert ms["student"] < ms["teacher"], ms
        drv.save_screenshot(str(tmp_path / "demo.png"))
        if os.environ.get("DISTILL_DEMO_SCREENSHOT"):  # the README's picture: a run of this test
            shutil.copy(tmp_path / "demo.png", os.environ["DISTILL_DEMO_SCREENSHOT"])
        # a refused value is a message in the page; the server goes on and answers the next request
        _set(drv, "seed", -1)
        drv.find_element(By.ID, "generate").click()
        wait.until(lambda d: "seed: must be an integer" in d.find_element(By.TAG_NAME, "body").text)
        _set(drv, "seed", 1)
        drv.find_element(By.ID, "generate").click()
        wait.until(lambda d: (m := MS.search(d.find_element(By.ID, "student_time").text)) and m.group(3) == "2")
        # generate continuously: images/s per model, until Stop
        drv.find_element(By.ID, "continuous").click()
        wait.until(lambda d: (m := FRAMES.search(d.find_element(By.ID, "fps").text)) and int(m.group(1)) >= 3)
        drv.find_element(By.ID, "stop").click()
        time.sleep(1.5)
        text = drv.find_element(By.ID, "fps").text
        rates = dict((n.lower(), float(v)) for n, v in re.findall(r"(Teacher|Student|GAN) ([\d.]+) images/s", text))
        assert rates.keys() == {"teacher", "student", "gan"} and rates["student"] > rates["teacher"], text
        time.sleep(1.5)
        assert drv.find_element(By.ID, "fps").text == text  # stopped
        assert proc.poll() is None
    finally:
        drv.quit()
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(profile, ignore_errors=True)
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    server_log = (tmp_path / "demo.log").read_text()
    assert "Traceback" not in server_log and "refused: seed: must be an integer" in server_log, server_log[-2000:]
