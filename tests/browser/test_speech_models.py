"""The Speech tab's model picker in headless Chromium, against the real gateway and tritonserver serving tiny-random
Orpheus and Chatterbox: the picker offers the models the gateway serves (not their OpenAI aliases), each model's own
built-in voices and the stored voices of its codec, Chatterbox's options only for Chatterbox (bounds and defaults
from the API's schema), and a voice cloned for Chatterbox without a transcript, then spoken."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from tests.browser.test_speech_page import page_url, player_duration, wait_done  # noqa: F401 (page_url: fixture)

pytestmark = pytest.mark.integration

SCREENSHOT = "/tmp/tritone_speech_models.png"
SAMPLE_RATE = 24000
TEXT = "Hello there, how are you doing today?"  # one sentence: at most 1 s (page_url's speech_max_sentence_s)
ORPHEUS_VOICES = ["tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe"]


def clip(filename: str, seconds: float = 2.0) -> dict:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    buffer = io.BytesIO()
    sf.write(buffer, (0.2 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), SAMPLE_RATE, format="WAV")
    return {"name": filename, "mimeType": "audio/wav", "buffer": buffer.getvalue()}


def values(page, select: str) -> list[str]:
    return page.locator(f"{select} option").evaluate_all("(options) => options.map((option) => option.value)")


def pick_model(page, model: str, voices: list[str]) -> None:
    """Choose `model` and wait until the voice picker lists its voices (`voices`: the built-in ones, first)."""
    page.get_by_label("Model", exact=True).select_option(model)
    page.wait_for_function("([model, first]) => document.getElementById('voice').dataset.model === model && "
                           "document.getElementById('voice').options[0]?.value === first", arg=[model, voices[0]])
    assert values(page, "#voice")[:len(voices)] == voices


def speak(page) -> dict:
    """Click Speak and wait for the end of the stream; the JSON body the page sent."""
    with page.expect_request("**/v1/audio/speech") as sent:
        page.get_by_role("button", name="Speak").click()
    wait_done(page, "speech-status")
    return sent.value.post_data_json


def open_speech_tab(page) -> None:
    page.goto("/#speech")
    page.wait_for_function("document.getElementById('speech-model').options.length > 0 && "
                           "document.getElementById('voice').dataset.model === 'orpheus'")
    page.wait_for_selector('#exaggeration[max]', state="attached")  # the schema's bounds are read


def test_the_model_picker_offers_the_served_models_and_each_ones_voices_and_options(page):
    open_speech_tab(page)
    assert values(page, "#speech-model") == ["orpheus", "chatterbox"]  # tts-1 & co. are orpheus's aliases
    assert page.get_by_label("Model", exact=True).input_value() == "orpheus"
    assert values(page, "#voice") == ORPHEUS_VOICES
    options = page.locator("#chatterbox-options")
    assert options.is_hidden() and page.get_by_label("Exaggeration").is_hidden()
    assert page.locator("#voice-transcript").get_attribute("required") == ""
    assert page.locator("#voice-help").text_content().endswith("; and the words spoken in it.")

    pick_model(page, "chatterbox", ["default"])
    assert values(page, "#voice") == ["default"]
    assert options.is_visible()
    bounds = {name: (page.locator(f"#{name}").get_attribute("min"), page.locator(f"#{name}").get_attribute("max"),
                     page.locator(f"#{name}").get_attribute("placeholder"))
              for name in ("exaggeration", "cfg-weight", "min-p")}
    assert bounds == {"exaggeration": ("0", "2", "0.5"), "cfg-weight": ("0", "2", "0.5"), "min-p": ("0", "1", "0.05")}
    assert page.locator("#voice-transcript").get_attribute("required") is None
    assert page.get_by_text("(optional)").is_visible()
    assert page.locator("#voice-help").text_content().endswith("; the words spoken in it are optional.")
    page.get_by_label("Exaggeration").fill("1.5")  # typed for chatterbox, then orpheus is chosen: not sent

    pick_model(page, "orpheus", ORPHEUS_VOICES)
    assert options.is_hidden() and page.get_by_label("Exaggeration").is_hidden()
    assert page.locator("#voice-transcript").get_attribute("required") == ""
    assert page.get_by_text("(optional)").is_hidden()
    page.get_by_label("Text to speak").fill(TEXT)
    body = speak(page)
    assert body == {"input": TEXT, "model": "orpheus", "voice": "tara", "speed": 1, "response_format": "pcm"}
    assert page.locator("#speech-status").get_attribute("data-state") == "done", \
        page.locator("#speech-error").text_content()


def test_chatterbox_speaks_with_its_options(page):
    open_speech_tab(page)
    pick_model(page, "chatterbox", ["default"])
    page.get_by_label("Text to speak").fill(TEXT)
    page.get_by_label("Exaggeration").fill("0.7")
    page.get_by_label("CFG weight").fill("0.3")
    page.get_by_label("Min p").fill("0.1")
    body = speak(page)
    assert body == {"input": TEXT, "model": "chatterbox", "voice": "default", "speed": 1, "exaggeration": 0.7,
                    "cfg_weight": 0.3, "min_p": 0.1, "response_format": "pcm"}
    status = page.locator("#speech-status")
    assert status.get_attribute("data-state") == "done", page.locator("#speech-error").text_content()
    received = int(status.get_attribute("data-bytes"))
    assert 0 < received <= 2 * SAMPLE_RATE  # one sentence of at most 1 s, s16le
    assert int(status.get_attribute("data-buffers")) >= 1  # played while it streamed
    assert player_duration(page, "speech-player") == pytest.approx(received / 2 / SAMPLE_RATE, abs=0.01)
    assert page.get_by_role("link", name="Download speech").is_visible()
    page.screenshot(path=SCREENSHOT, full_page=True)


def test_a_voice_cloned_for_chatterbox_needs_no_transcript_and_speaks_only_for_chatterbox(page):
    open_speech_tab(page)
    pick_model(page, "chatterbox", ["default"])
    error = page.locator("#voice-error")
    page.get_by_label("Voice clip").set_input_files(files=[clip("short.wav", seconds=0.5)])
    page.get_by_label("Voice name").fill("Mine")
    page.get_by_role("button", name="Upload voice").click()  # the gateway's 400, shown with its message
    error.get_by_text("file:").wait_for()
    assert error.text_content() == "file: the clip lasts 0.50 s; a voice clip must last 1 to 30 s"

    page.get_by_label("Voice clip").set_input_files(files=[clip("mine.wav")])
    page.get_by_role("button", name="Upload voice").click()  # no transcript: chatterbox needs none
    page.locator("#voices li").wait_for()
    assert error.is_hidden()
    stored = page.locator("#voices li")
    voice_id = stored.get_attribute("data-voice")
    assert (stored.get_attribute("data-codec"), stored.locator("p").nth(1).text_content()) == \
        ("chatterbox_voice", "2.0 s · for chatterbox")
    assert page.get_by_label("Voice", exact=True).input_value() == voice_id  # picked after upload
    assert values(page, "#voice") == ["default", voice_id]

    page.get_by_label("Text to speak").fill(TEXT)
    body = speak(page)
    assert (body["model"], body["voice"]) == ("chatterbox", voice_id)
    status = page.locator("#speech-status")
    assert status.get_attribute("data-state") == "done", page.locator("#speech-error").text_content()
    assert 0 < int(status.get_attribute("data-bytes")) <= 2 * SAMPLE_RATE

    pick_model(page, "orpheus", ORPHEUS_VOICES)  # another codec: not offered, still listed (and deletable)
    assert values(page, "#voice") == ORPHEUS_VOICES
    assert page.locator("#voices li").count() == 1
    # a voice of another codec named anyway (a stale picker): the gateway's 422, shown with its message
    page.evaluate("(id) => { const picker = document.getElementById('voice'); picker.add(new Option('Mine', id)); "
                  "picker.value = id; }", voice_id)
    speak(page)
    assert page.locator("#speech-error").text_content() == (
        f"voice: 'Mine' ({voice_id}) holds codes of codec chatterbox_voice version 1, but orpheus speaks from codec "
        "snac_encoder version 1; clone the voice again for orpheus (POST /v1/audio/voices with model=orpheus)")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete voice Mine").click()
    page.get_by_text("No cloned voices yet.").wait_for()
