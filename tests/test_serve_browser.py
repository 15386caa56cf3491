"""`audiorep serve` in a real headless browser (Debian's chromium driven by Playwright).

The page loads with settings from its URL, a codec round trip plays back (the reconstruction's
audio element gets a source, reports its duration and plays), a sampling run streams progress
(the attention canvas changes while it runs) and finishes with its audio, predictions and
downloads, a reload restores the settings, and a screenshot is checked. No browser is
downloaded: the test uses the system's chromium (``AUDIOREP_CHROMIUM`` or ``chromium`` on the
PATH) and is skipped, with the reason, without it or without the ``playwright`` package.

The screenshot goes to ``tmp_path``; with ``AUDIOREP_UPDATE_SCREENSHOT=1`` it also replaces
docs/img/serve.png (the README's picture), so a normal run never modifies the repository.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import struct
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.network  # a server on 127.0.0.1

try:
    from playwright.sync_api import sync_playwright
except ImportError:
    pytest.skip(
        "the playwright package is not installed (pip install playwright; no browser "
        "download needed, the system chromium is used)",
        allow_module_level=True,
    )


def _chromium() -> str | None:
    env = os.environ.get("AUDIOREP_CHROMIUM")
    if env:
        return env if os.access(env, os.X_OK) else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


CHROMIUM = _chromium()
if CHROMIUM is None:
    pytest.skip(
        "no chromium executable (apt-get install chromium, or set AUDIOREP_CHROMIUM)",
        allow_module_level=True,
    )

from audiorep.serve import App, ServeConfig, serve_in_thread, stop  # noqa: E402
from audiorep.serve.backend import (  # noqa: E402
    RANDOM_MODEL,
    SMALL_MODEL,
    BackendError,
    GenerationBackend,
)
from test_serve import tone_wav  # noqa: E402  (after the skips: the same helpers)

ROOT = Path(__file__).resolve().parents[1]
JUDGE = ROOT / "tests" / "fixtures" / "specvqgan_judge" / "judge.safetensors"
VIEWPORT = {"width": 1280, "height": 960}


class PacedBackend(GenerationBackend):
    """The real backend with every step's event held 5 ms: the tiny random model samples a
    clip in ~0.3 s on an idle CPU, too fast for the page to be seen streaming or cancelled."""

    def sample(self, model, condition, settings, *, prime, on_step, cancel):
        def paced(progress):
            on_step(progress)
            time.sleep(0.005)

        return super().sample(model, condition, settings, prime=prime, on_step=paced,
                              cancel=cancel)  # fmt: skip


def _backend() -> tuple[GenerationBackend, str]:
    """The shipped small model when this install has it, else the seeded tiny random one."""
    backend = PacedBackend(SMALL_MODEL, vocoder="small")
    try:
        backend.load(SMALL_MODEL)
        return backend, SMALL_MODEL
    except (BackendError, ImportError):
        return PacedBackend(RANDOM_MODEL, vocoder="small"), RANDOM_MODEL


def _poll(page, expression: str, until, timeout: float, what: str):
    """Evaluate ``expression`` until ``until(value)``; evaluation goes through the DevTools
    protocol, so the page's Content-Security-Policy (no eval) stays in force."""
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(expression)
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last value {value!r})")
        time.sleep(0.05)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_page_codec_round_trip_and_streamed_sampling(tmp_path):
    backend, model_name = _backend()
    app = App(ServeConfig(transformer=model_name, judge=str(JUDGE)), backend)
    server = serve_in_thread(app)
    wav = tone_wav(tmp_path / "chirp.wav", seconds=2.0)
    problems: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"],
            )
            page = browser.new_page(viewport=VIEWPORT)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on(
                "console",
                lambda m: (
                    problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None
                ),
            )

            # --- the page, with settings from the URL
            page.goto(f"{server.url}?seed=3&temperature=0.9&top_k=32&width_scale=1")
            page.wait_for_selector("body[data-ready='1']", timeout=20000)
            _poll(page, "() => document.getElementById('sample-run').disabled", lambda v: not v,
                  60, "the model to load")  # fmt: skip
            assert page.input_value("#seed") == "3" and page.input_value("#top_k") == "32"
            assert page.input_value("#model") == model_name
            assert "predictions:" in page.inner_text("#judge-note")

            # --- codec round trip: bitrate, and the reconstruction plays
            page.set_input_files("#codec-file", str(wav))
            page.click("#codec-run")
            page.wait_for_selector("#codec-result:not([hidden])", timeout=30000)
            summary = page.inner_text("#codec-summary")
            kbps = float(re.search(r"= (\d+\.\d{3}) kbps", summary).group(1))
            columns = int(re.search(r"5×(\d+) codes", summary).group(1))
            assert columns == 11  # 2 s: 1 + 44100 // 256 = 173 frames -> ceil(173 / 16)
            # 7 bits x 5 x 11 codes / 2 s / 1000; the page shows 3 decimals (half a unit off)
            assert kbps == pytest.approx(7 * 5 * columns / 2.0 / 1000, abs=5e-4 + 1e-9)
            duration = page.evaluate(
                """() => new Promise((resolve, reject) => {
                    const a = document.getElementById('audio-reconstruction');
                    if (a.readyState >= 1) return resolve(a.duration);
                    a.addEventListener('loadedmetadata', () => resolve(a.duration));
                    a.addEventListener('error', () => reject(new Error('media error')));
                })"""
            )
            assert duration == pytest.approx(173 * 256 / 22050, abs=0.05)
            played = page.evaluate(
                """async () => {
                    const a = document.getElementById('audio-reconstruction');
                    a.muted = true;
                    await a.play();
                    await new Promise((r) => setTimeout(r, 400));
                    a.pause();
                    return a.currentTime;
                }"""
            )
            assert played > 0
            page.click("#ab-toggle")
            assert page.inner_text("#ab-toggle") == "A/B: reconstruction"
            assert page.locator("#codec-predictions tr").count() == 20  # two top-10 tables

            # --- a sampling run streams, then finishes
            page.click("#sample-run")
            ended = ("done", "failed", "cancelled")
            status = _poll(page, "() => window.audiorepState.status", lambda v: v in ended, 45,
                           "the run's end")  # fmt: skip
            assert status == "done", page.inner_text("#status")
            state = page.evaluate(
                "() => ({p: window.audiorepState.progressEvents, "
                "s: window.audiorepState.spectrogramEvents, step: window.audiorepState.lastStep})"
            )
            assert state["p"] > 1 and state["s"] >= 1 and state["step"] == 264
            # the attention canvas was redrawn with changing rows while the run streamed
            prints = page.evaluate("() => window.audiorepState.attentionPrints")
            assert len(prints) == state["p"] and len(set(prints)) > 1
            assert page.evaluate("() => document.getElementById('attention-canvas').width") == (
                int(prints[-1].split(":")[0])
            )
            assert page.get_attribute("#sample-audio", "src").endswith(".wav")
            assert page.get_attribute("#dl-npz", "href").endswith(".npz?download=1")
            assert page.locator("#sample-predictions tr").count() == 10
            assert "seed 3" in page.inner_text("#sample-summary")

            # --- the screenshot
            page.evaluate("() => window.scrollTo(0, 0)")
            png = page.screenshot()
            assert _png_size(png) == (VIEWPORT["width"], VIEWPORT["height"])
            _check_not_blank(png)
            (tmp_path / "serve.png").write_bytes(png)
            if os.environ.get("AUDIOREP_UPDATE_SCREENSHOT") == "1":
                out = ROOT / "docs" / "img" / "serve.png"
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(png)

            # --- the cancel button stops a run
            page.click("#sample-run")
            _poll(page, "() => window.audiorepState.status", lambda v: v == "running", 30,
                  "the second run to start")  # fmt: skip
            page.click("#sample-cancel")
            status = _poll(page, "() => window.audiorepState.status", lambda v: v in ended, 30,
                           "the cancelled run's end")  # fmt: skip
            assert status == "cancelled" and page.inner_text("#status") == "sampling cancelled"

            # --- a reload restores the settings from the URL
            page.reload()
            page.wait_for_selector("body[data-ready='1']", timeout=20000)
            assert page.input_value("#seed") == "3" and page.input_value("#temperature") == "0.9"
            browser.close()
    finally:
        stop(server)
    assert problems == []


def _check_not_blank(png: bytes) -> None:
    """Many colours and real contrast: the spectrograms and code grids are drawn."""
    mpl_image = pytest.importorskip("matplotlib.image", reason="matplotlib decodes the PNG")
    img = mpl_image.imread(io.BytesIO(png), format="png")[..., :3]
    colours = np.unique((img * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 200 and float(img.std()) > 0.1
