"""The page's Speech tab in headless Chromium, against the real gateway and tritonserver (tiny-random Orpheus)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from tritone.gateway.settings import Settings
from tests.integration.stack import run_gateway

pytestmark = pytest.mark.integration

SCREENSHOT = "/tmp/tritone_speech_page.png"
SAMPLE_RATE = 24000


@pytest.fixture(scope="module")
def page_url(triton_stack, tmp_path_factory):
    """A gateway whose sentences are capped at 1 s: random weights seldom say end-of-speech."""
    settings = Settings(triton_grpc_url=triton_stack.grpc_url, triton_metrics_url=triton_stack.metrics_url,
                        triton_http_url=f"http://{triton_stack.http_url}",
                        data_dir=tmp_path_factory.mktemp("gateway"), speech_max_sentence_s=1.0)
    with run_gateway(settings) as url:
        yield url


def wait_done(page, status_id: str) -> None:
    page.wait_for_selector(f'#{status_id}[data-state="done"], #{status_id}[data-state="error"]', timeout=120_000)


def player_duration(page, player_id: str) -> float:
    return page.evaluate("""(id) => new Promise((resolve) => {
        const audio = document.getElementById(id);
        if (audio.readyState >= 1) resolve(audio.duration);
        else audio.addEventListener("loadedmetadata", () => resolve(audio.duration), { once: true });
    })""", player_id)


def test_the_speech_tab_streams_and_plays(page):
    page.goto("/")
    page.get_by_role("tab", name="Speech").click()
    assert page.get_by_role("tab", name="Speech").get_attribute("aria-selected") == "true"
    assert page.get_by_role("button", name="Generate").count() == 0  # the music panel is hidden
    page.get_by_label("Text to speak").fill("Hello there, how are you doing today? She sells sea shells.")
    page.wait_for_function("document.getElementById('voice').options.length >= 8")
    page.get_by_label("Voice", exact=True).select_option("leo")
    page.get_by_role("button", name="Speak").click()

    wait_done(page, "speech-status")
    status = page.locator("#speech-status")
    assert status.get_attribute("data-state") == "done", page.locator("#speech-error").text_content()
    received = int(status.get_attribute("data-bytes"))
    assert 0 < received <= 2 * 2 * (SAMPLE_RATE + 2048) and received % (2 * 2048) == 0  # whole SNAC frames
    assert int(status.get_attribute("data-buffers")) >= 1  # playback was scheduled while streaming
    assert player_duration(page, "speech-player") == pytest.approx(received / 2 / SAMPLE_RATE, abs=0.01)
    assert page.get_by_role("link", name="Download speech").is_visible()
    page.screenshot(path=SCREENSHOT, full_page=True)


def clip(filename: str) -> dict:
    t = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    buffer = io.BytesIO()
    sf.write(buffer, (0.2 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), SAMPLE_RATE, format="WAV")
    return {"name": filename, "mimeType": "audio/wav", "buffer": buffer.getvalue()}


def test_a_cloned_voice_is_uploaded_picked_spoken_and_deleted(page):
    page.goto("/#speech")
    page.get_by_label("Voice clip").set_input_files(files=[clip("me.mp3")])
    page.get_by_label("Voice name").fill("Me")
    page.get_by_label("Transcript").fill("Hello there, how are you doing today?")
    page.get_by_role("button", name="Upload voice").click()
    error = page.locator("#voice-error")
    error.get_by_text("file:").wait_for()
    assert error.text_content() == "file: the content is WAV but the file name ends in .mp3"

    page.get_by_label("Voice clip").set_input_files(files=[clip("me.wav")])
    page.get_by_role("button", name="Upload voice").click()
    page.locator("#voices li").wait_for()
    assert error.is_hidden()
    voice_id = page.locator("#voices li").get_attribute("data-voice")
    assert page.get_by_label("Voice", exact=True).input_value() == voice_id  # picked after upload

    page.get_by_label("Text to speak").fill("The quick brown fox jumps over the lazy dog.")
    page.get_by_role("button", name="Speak").click()
    wait_done(page, "speech-status")
    assert page.locator("#speech-status").get_attribute("data-state") == "done", \
        page.locator("#speech-error").text_content()

    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.get_by_role("button", name="Delete voice Me").click()  # asks first: dismissed, nothing is deleted
    page.wait_for_timeout(300)
    assert asked == ["Delete the voice “Me”? Requests naming it will fail."]
    assert page.locator("#voices li").count() == 1
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete voice Me").click()
    page.get_by_text("No cloned voices yet.").wait_for()
    assert voice_id not in page.locator("#voice").inner_html()


def test_the_speech_tab_shows_the_api_error(page):
    page.goto("/#speech")
    page.get_by_label("Text to speak").fill("   ")  # passes the browser's `required`; the API refuses it
    page.get_by_role("button", name="Speak").click()
    wait_done(page, "speech-status")
    assert page.locator("#speech-error").text_content() == "input: must not be blank"
