"""A real gateway (uvicorn) in front of the real tritonserver, and a real headless Chromium driving it.

Nothing here skips: without Debian's chromium or the playwright package the tests fail and say what
to install.
"""

from __future__ import annotations

import shutil

import pytest

from tritone.gateway.settings import Settings
from tests.integration.stack import run_gateway

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


@pytest.fixture(scope="session")
def page_url(triton_stack, tmp_path_factory):
    """One real gateway (uvicorn) for the browser session."""
    settings = Settings(triton_grpc_url=triton_stack.grpc_url, triton_metrics_url=triton_stack.metrics_url,
                        triton_http_url=f"http://{triton_stack.http_url}", data_dir=tmp_path_factory.mktemp("gateway"))
    with run_gateway(settings) as url:
        yield url


@pytest.fixture(scope="module")  # Playwright's loop must be gone before other tests use asyncio.run
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser tests need Playwright for Python: pip install playwright "
                    "(its wheel ships the driver; no `playwright install` is needed)")
    if not shutil.which(CHROMIUM):
        pytest.fail(f"the browser tests need Chromium at {CHROMIUM}: apt-get install -y chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, page_url):
    context = browser.new_context(base_url=page_url, viewport={"width": 900, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
