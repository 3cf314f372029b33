"""The page's controls in headless Chromium against the real gateway and tritonserver: an API key kept in
the browser, Stop, one playback at a time, jobs that look cancelled, and /docs without Internet access."""

from __future__ import annotations

import time

import pytest

from tritone.ensemble import tensors as T
from tritone.gateway.settings import Settings
from tests.integration.stack import PausedModel, read_metrics, run_gateway

pytestmark = pytest.mark.integration

KEY = "sk-page-test"
SCREENSHOT = "/tmp/tritone_page_controls.png"


@pytest.fixture(scope="module")
def keyed_url(triton_stack, tmp_path_factory):
    settings = Settings(triton_grpc_url=triton_stack.grpc_url, triton_metrics_url=triton_stack.metrics_url,
                        data_dir=tmp_path_factory.mktemp("keyed"), api_keys=[KEY])
    with run_gateway(settings) as url:
        yield url


def generate(page, seconds: str) -> None:
    page.get_by_label("Prompt", exact=True).fill("lo-fi piano with rain")
    page.get_by_label("Duration (s)", exact=True).fill(seconds)
    page.get_by_role("button", name="Generate").click()


def test_the_api_key_field_makes_the_page_work_on_a_keyed_server_and_is_kept(browser, keyed_url):
    context = browser.new_context(base_url=keyed_url)
    page = context.new_page()
    try:
        page.goto("/")
        page.wait_for_selector("#jobs-error:not([hidden])")
        assert "API key" in page.locator("#jobs-error").text_content()  # 401 without the key

        page.get_by_label("API key").fill(KEY)
        page.get_by_role("button", name="Use key").click()
        page.wait_for_selector("#jobs-error[hidden]", state="attached")
        generate(page, "1")
        page.wait_for_selector('#stream-status[data-state="done"], #stream-status[data-state="error"]',
                               timeout=120_000)
        assert page.locator("#stream-status").get_attribute("data-state") == "done", \
            page.locator("#error").text_content()

        page.reload()  # kept in this browser's storage
        assert page.get_by_label("API key").input_value() == KEY
        assert page.evaluate("localStorage.getItem('tritone.apiKey')") == KEY
    finally:
        context.close()


def test_stop_cancels_the_stream_and_the_server_frees_it(page, triton_stack):
    # The tiny model makes 30 s of music in about a second, faster than a click lands: the engine is paused
    # (SIGSTOP of its stub) the moment the page starts streaming, so Stop meets a stream that is still open.
    before = read_metrics(triton_stack)["tritone_streams_cancelled_total"]
    page.goto("/")
    assert page.get_by_role("button", name="Stop").first.is_hidden()
    with PausedModel(triton_stack, T.MUSICGEN) as engine:
        page.expose_function("pauseEngine", engine.pause)
        page.evaluate("""() => {
            const status = document.getElementById("stream-status");
            new MutationObserver((_, observer) => {
                if (status.dataset.state !== "streaming") return;
                observer.disconnect();
                window.pauseEngine();
            }).observe(status, { attributes: true });
        }""")
        generate(page, "30")
        page.wait_for_selector('#stream-status[data-state="streaming"]', timeout=60_000)
        assert engine.paused.wait(10), "the page never asked for the engine to pause"
        assert page.locator("#stream-status").get_attribute("data-state") == "streaming", \
            "the stream ended before the engine was paused"
        page.locator("#stop").click()
        page.wait_for_selector('#stream-status[data-state="stopped"]', timeout=10_000)
        assert page.locator("#stop").is_hidden() and page.locator("#error").is_hidden()
        assert page.evaluate("liveSources.length") == 0  # nothing scheduled plays on
    deadline = time.monotonic() + 15  # continued: its next step finds the stream cancelled
    while read_metrics(triton_stack)["tritone_streams_cancelled_total"] == before:
        assert time.monotonic() < deadline, "the engine never saw the stream cancelled"
        time.sleep(0.1)
    assert read_metrics(triton_stack)["tritone_decode_slots_active"] == 0


def test_the_player_never_plays_over_the_live_stream(page):
    page.goto("/")
    page.evaluate("""() => {  // the player's file at every moment the page is streaming
        window.srcWhileStreaming = [];
        const status = document.getElementById("stream-status");
        new MutationObserver(() => {
            if (status.dataset.state === "streaming")
                window.srcWhileStreaming.push(document.getElementById("player").getAttribute("src"));
        }).observe(status, { attributes: true, childList: true, subtree: true });
    }""")
    generate(page, "1")
    page.wait_for_selector('#stream-status[data-state="done"]', timeout=120_000)
    generate(page, "6")  # generated faster than it plays: most of it is still scheduled when the stream ends
    page.wait_for_function("window.srcWhileStreaming.length >= 2", timeout=60_000)
    page.wait_for_selector('#stream-status[data-state="done"]', timeout=120_000)
    seen = page.evaluate("window.srcWhileStreaming")
    assert len(seen) >= 2 and set(seen) == {None}  # the last file is gone while a new stream plays live
    assert page.evaluate("liveSources.length") > 0
    page.evaluate("document.getElementById('player').play()")  # the kept file starts: the live audio stops
    page.wait_for_function("liveSources.length === 0", timeout=5_000)


def test_cancelled_jobs_look_cancelled(page):
    page.goto("/")
    page.get_by_label("Job prompt").fill("a very long symphony")
    page.get_by_role("button", name="Queue job").click()
    job = page.locator("#jobs li").first
    job.get_by_role("button", name="Cancel").click(timeout=30_000)
    page.wait_for_selector('#jobs li[data-status="cancelled"]', timeout=30_000)
    assert job.locator(".badge").text_content() == "cancelled"
    assert job.locator(".job-title").evaluate("e => getComputedStyle(e).textDecorationLine") == "line-through"
    assert job.locator(".badge").evaluate("e => getComputedStyle(e).textDecorationLine") == "none"
    page.screenshot(path=SCREENSHOT, full_page=True)


def test_docs_render_without_internet_access(page):
    outside = []

    def only_local(route, request):  # a request that leaves the machine is recorded and refused
        if request.url.split("/")[2].split(":")[0] == "127.0.0.1":
            return route.continue_()
        outside.append(request.url)
        return route.abort()

    page.route("**/*", only_local)
    page.goto("/docs")
    page.wait_for_selector(".opblock", timeout=30_000)
    assert page.locator(".opblock").count() > 20  # every operation of /openapi.json
    assert page.locator(".opblock-summary-path", has_text="/v1/audio/speech").count() >= 1
    assert outside == []
