"""The page at GET /, in headless Chromium, against the real gateway and tritonserver (tiny-random MusicGen)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.integration

SCREENSHOT = "/tmp/tritone_page.png"
SAMPLE_RATE = 32000


def test_streams_plays_and_keeps_the_audio(page):
    page.goto("/")
    page.get_by_label("Prompt", exact=True).fill("lo-fi piano with rain")
    page.get_by_label("Duration (s)", exact=True).fill("2")
    page.get_by_label("Seed").fill("7")
    page.get_by_role("button", name="Generate").click()

    status = page.locator("#stream-status")
    page.wait_for_selector('#stream-status[data-state="done"], #stream-status[data-state="error"]', timeout=120_000)
    assert status.get_attribute("data-state") == "done", page.locator("#error").text_content()
    assert int(status.get_attribute("data-bytes")) == 2 * SAMPLE_RATE * 2  # 2 s of s16le mono
    assert int(status.get_attribute("data-buffers")) >= 1                 # playback was scheduled while streaming

    duration = page.evaluate("""() => new Promise((resolve) => {
        const audio = document.getElementById("player");
        if (audio.readyState >= 1) resolve(audio.duration);
        else audio.addEventListener("loadedmetadata", () => resolve(audio.duration), { once: true });
    })""")
    assert duration == pytest.approx(2.0, abs=0.01)
    assert page.get_by_role("link", name="Download WAV").is_visible()
    assert page.locator("#error").is_hidden()
    page.screenshot(path=SCREENSHOT, full_page=True)


def test_shows_the_api_error_message(page):
    page.goto("/")
    page.get_by_label("Prompt", exact=True).fill("   ")  # passes the browser's `required`; the API refuses it
    page.get_by_label("Duration (s)", exact=True).fill("1")
    page.get_by_role("button", name="Generate").click()

    page.wait_for_selector('#stream-status[data-state="error"]', timeout=30_000)
    error = page.get_by_role("alert").first
    assert error.text_content() == "prompt: must not be blank"
    assert page.locator("#stream-status").get_attribute("data-bytes") == "0"


def test_jobs_list_progress_cancel_and_result(page):
    """The jobs UI against the jobs API contract (responses stubbed in the browser)."""
    job = {"id": "job1", "status": "running", "prompt": "a long symphony", "progress": 25.0, "eta_s": 42,
           "queue_position": None, "audio_url": None}
    calls = []

    def jobs_api(route, request):
        calls.append((request.method, request.url.split("/v1/", 1)[1], request.post_data))
        if request.method == "POST" and request.url.endswith("/v1/jobs"):
            job.update(prompt=json.loads(request.post_data)["prompt"])
            return route.fulfill(status=202, json=job)
        if request.url.endswith("/cancel"):
            job.update(status="cancelled")
            return route.fulfill(json=job)
        return route.fulfill(json={"data": [job]})

    page.route("**/v1/jobs**", jobs_api)
    page.goto("/")
    page.get_by_label("Job prompt").fill("a long symphony")
    page.get_by_label("Job duration (s)").fill("300")
    page.get_by_role("button", name="Queue job").click()

    item = page.locator("#jobs li")
    item.get_by_text("about 42 s left").wait_for()
    assert item.locator("progress").evaluate("bar => bar.value") == 25
    assert ("POST", "jobs", json.dumps({"prompt": "a long symphony", "duration": 300}, separators=(",", ":"))) in calls

    job.update(progress=100.0, status="succeeded", eta_s=0, audio_url="/v1/jobs/job1/audio")
    page.get_by_role("link", name="Audio").wait_for()  # polled every second while a job runs
    assert page.get_by_role("link", name="Audio").get_attribute("href") == "/v1/jobs/job1/audio"

    job.update(status="running", progress=50.0, audio_url=None)
    page.get_by_role("button", name="Queue job").click()
    page.get_by_role("button", name="Cancel job job1").click()
    page.locator('#jobs li[data-status="cancelled"]').wait_for()
    assert ("POST", "jobs/job1/cancel", None) in calls


def test_jobs_section_says_when_the_server_has_no_jobs_api(page):
    page.route("**/v1/jobs", lambda route: route.fulfill(
        status=404, json={"error": {"message": "Not Found", "type": "not_found_error"}}))
    page.goto("/")
    page.get_by_text("Jobs are not available on this server.").wait_for()
    assert page.get_by_role("button", name="Queue job").is_disabled()
    assert page.get_by_role("button", name="Generate").is_enabled()


def test_static_files_are_a_fixed_list(page):
    assert page.request.get("/static/app.js").ok
    assert page.request.get("/static/style.css").headers["content-type"].startswith("text/css")
    assert page.request.get("/static/main.py").status == 404
    assert page.request.get("/static/..%2Froutes%2Fweb.py").status == 404


def test_the_forms_take_the_models_limits_from_the_api(page):
    """No limit is written in the page: it reads the request schemas (/openapi.json), which the models' configs set."""
    page.goto("/")
    page.wait_for_selector('#duration[max="30"]', timeout=10_000)
    assert (page.locator("#duration").get_attribute("min"), page.locator("#prompt").get_attribute("maxlength"),
            page.locator("#job-prompt").get_attribute("maxlength")) == ("0.1", "2000", "2000")
    assert page.locator("#voice-help").text_content() == (
        "The clip: wav, flac, mp3 or ogg (Vorbis, Opus); 1 to 30 s, at least 16 kHz, mono or stereo; and the words "
        "spoken in it.")
