"""The demo page in a real headless Chromium (type, press Speak, the stream starts before synthesis ends), and the
voice chat answered by the pipeline's own LM, on a tiny random-weight pipeline served from this process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.test_demo import free_port
from tests.test_mos_browser import ARGS, CHROMIUM
from tests.test_pipeline import build_tiny_pipeline

MAX_FRAMES = 60
SCREENSHOT = Path("/tmp/demo_browser.png")
TEXT = ("Hello there. The quick brown fox jumps over the lazy dog. She sells sea shells by the sea shore. "
        "Judge the size of the azure vase. Why would a young cow chew on thick hay?")
# Timestamps (page clock, ms) of what the listener sees: recorded on every DOM change, so none is missed.
WATCH = """
window.__marks = {};
new MutationObserver(() => {
  const m = window.__marks, now = performance.now();
  const audio = document.querySelector('#tts-audio audio');
  const status = document.querySelector('#tts-status');
  if (audio && audio.src && !m.src) m.src = now;
  if (status && status.innerText.includes('Streaming') && !m.streaming) m.streaming = now;
  if (status && status.innerText.includes('real-time factor') && !m.done) m.done = now;
}).observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
document.addEventListener('timeupdate', e => {
  if (e.target.currentTime > 0 && !window.__marks.playing) window.__marks.playing = performance.now();
}, true);
"""


@pytest.fixture(scope="module")
def demo():
    """(pipeline, url) of the demo with its default responder, this pipeline's LM."""
    from speechlm.demo.app import DemoApp
    from speechlm.demo.config import DemoConfig, StreamOptions

    pipe = build_tiny_pipeline()
    app = DemoApp(pipe, DemoConfig(port=free_port(), stream=StreamOptions(max_frames=MAX_FRAMES, chunk_frames=4)))
    try:
        yield pipe, app.launch()
    finally:
        app.close()


def test_speak_streams_into_an_audio_element_in_chromium(demo):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    from PIL import Image

    _, url = demo
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.add_init_script(WATCH)
        page.goto(url)
        page.fill("#tts-text textarea", TEXT)
        page.evaluate("() => window.__marks.click = performance.now()")
        page.click("#tts-button")
        page.wait_for_function("() => window.__marks.done", timeout=90000)
        # the result: a playable stream that plays, the timings, the spectrogram and the download
        page.wait_for_function("""() => { const a = document.querySelector('#tts-audio audio');
                                          return a && a.src && a.readyState >= 2 && a.duration > 0; }""",
                               timeout=30000)
        page.wait_for_function("() => window.__marks.playing", timeout=30000)
        page.wait_for_selector("#tts-image img")
        page.wait_for_selector("#tts-file a[download], #tts-file a[href]")
        marks = page.evaluate("() => window.__marks")
        status = page.inner_text("#tts-status")
        page.screenshot(path=str(SCREENSHOT), full_page=True)
        browser.close()
    assert not errors, errors
    assert "First audio after" in status and "real-time factor" in status
    # streamed: the audio element had its source, and the page said it was streaming, before synthesis ended
    assert marks["src"] < marks["done"] and marks["streaming"] < marks["done"], marks

    shot = np.asarray(Image.open(SCREENSHOT).convert("RGB"))
    assert shot.shape[0] >= 900 and shot.shape[1] == 1200
    colors = len(np.unique(shot.reshape(-1, 3), axis=0))
    assert colors > 200, f"screenshot looks blank: {colors} colors"


def test_lm_chat_reply_is_spoken_as_phonemes(demo):
    from gradio_client import Client

    pipe, url = demo
    client = Client(url, verbose=False)
    messages, _, status = client.predict(None, "What is seven plus eight?", "lm", "alice", api_name="/chat")
    client.close()
    reply = pipe.chat("What is seven plus eight?")
    texts = [p["text"] for m in messages if m["role"] == "assistant" for p in m["content"] if p["type"] == "text"]
    assert texts == [reply + "\n\n*(phonemes)*"]
    [wav] = [p["value"] for m in messages if m["role"] == "assistant" for p in m["content"]
             if p["type"] == "component"]
    audio, sr = sf.read(wav, dtype="float32")
    # the reply's phonemes are spoken as they are (phonemes=True), not read as English text
    expected = pipe.synthesize(reply, "alice", phonemes=True, batch_size=1, max_frames=MAX_FRAMES)
    assert sr == expected.sample_rate and len(audio) == len(expected.audio)
    assert np.abs(audio - np.clip(expected.audio, -1, 1)).max() < 2 / 32768 and "real-time factor" in status
