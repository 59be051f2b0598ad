"""The explorer and dashboard in a real headless Chromium (Debian's), driven by Playwright."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from pinaivu_local.clock import utcnow
from pinaivu_local.requestlog.commitment import input_digest
from pinaivu_local.requestlog.log import RequestLog, Retention
from pinaivu_local.requestlog.records import FinishedRequest
from pinaivu_local.storage.database import Database
from tests.helpers import NO_EOG, TEST_KEY, RunningServer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# CI installs Debian's chromium and sets this, so a missing browser fails there instead of skipping.
REQUIRED = os.environ.get("PINAIVU_REQUIRE_BROWSER") == "1"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        if REQUIRED:
            pytest.fail(f"no browser at {CHROMIUM}: install Debian's chromium")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()


def wait_for_record(server: RunningServer, key: str, request_id: str) -> None:
    """Until GET /v1/requests/{id} finds the request (bounded)."""
    deadline = time.monotonic() + 20
    headers = {"authorization": f"Bearer {key}"}
    while httpx.get(f"{server.v1}/requests/{request_id}", headers=headers, timeout=10).status_code != 200:
        assert time.monotonic() < deadline, f"no record of {request_id}"
        time.sleep(0.05)


@pytest.fixture
def srv(server_factory: Callable[..., RunningServer], two_models: Path) -> RunningServer:
    return server_factory("--models-file", str(two_models))


def test_key_lifecycle_through_the_pages(browser: Any, srv: RunningServer, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone-sized screen
    page.on("dialog", lambda dialog: dialog.accept())
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    # dashboard: sign in with the admin key, create a key, read it once
    page.goto(f"{srv.base_url}/dashboard")
    page.fill("#key", TEST_KEY)
    page.click("#signin-button")
    page.fill("#new-name", "browser-made")
    page.fill("#new-models", "llama3.2:1b")
    page.fill("#new-rpm", "50")
    page.click("#create-button")
    page.wait_for_selector("#created:not(.hidden)")
    key = page.inner_text("#created-key").strip()
    assert key.startswith("sk-pnv-")
    row = page.locator("tr[data-name='browser-made']")
    row.wait_for()
    assert "llama3.2:1b" in row.inner_text() and "50" in row.inner_text()

    # use it through the API
    messages = [{"role": "user", "content": "Hello from the browser test"}]
    client = openai.OpenAI(base_url=srv.v1, api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="llama3.2:1b", messages=messages, max_tokens=8, temperature=0, logit_bias=NO_EOG
    )
    request_id = raw.headers["x-request-id"]
    output = raw.parse().choices[0].message.content or ""

    # the dashboard shows the usage once the record is written (the log writes it in the background)
    wait_for_record(srv, key, request_id)
    page.reload()
    page.locator("tr[data-name='browser-made'] .requests-24h", has_text="1").wait_for()
    assert page.locator("#chart rect").count() >= 1

    # explorer: sign in with the new key, find the request, verify it
    page.goto(f"{srv.base_url}/explorer")
    page.fill("#key", key)
    page.click("#signin-button")
    page.locator("#recent tbody tr", has_text=request_id).wait_for()
    # the record names no node (no fleet): the list says where it ran as people would, not "-"
    assert page.inner_text(f"#recent tbody tr:has-text('{request_id}') td.node") == "this box"
    page.fill("#request-id", request_id)
    page.click("#lookup-button")
    page.locator("#record-fields", has_text="browser-made").wait_for()
    assert "llama3.2:1b" in page.inner_text("#record-fields")
    # the network view: one box, up, with its models and their load
    page.locator("#network-summary.ok", has_text="1 of 1 node up").wait_for()
    assert "llama3.2:1b 0/" in page.inner_text("#nodes tr[data-node='this box']")
    receipt = json.loads(raw.headers["x-pinaivu-receipt"])["receipt"]
    page.locator("#receipt-status.ok", has_text="signature valid (checked in this browser with Web Crypto)").wait_for()
    assert f"Signed by node {receipt['node_id']}" in page.inner_text("#receipt-status")
    page.fill("#verify-input", json.dumps(messages))
    page.fill("#verify-output", output)
    page.click("#verify-button")
    page.locator("#verdict.ok").wait_for()
    assert "reproduced the output exactly" in page.inner_text("#replay")
    page.fill("#verify-output", output + " tampered")
    page.click("#verify-button")
    page.locator("#verdict.bad").wait_for()
    page.screenshot(path=str(tmp_path / "explorer.png"), full_page=True)

    # dashboard: revoke it; the API answers 401 at once
    page.goto(f"{srv.base_url}/dashboard")
    page.click("#signout")
    page.fill("#key", TEST_KEY)
    page.click("#signin-button")
    page.locator("tr[data-name='browser-made'] [data-action='revoke']").click()
    page.locator("tr[data-name='browser-made'] td.bad", has_text="revoked").wait_for()
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="llama3.2:1b", messages=messages, max_tokens=2)
    assert caught.value.code == "revoked_api_key"
    assert errors == []


def test_edit_limits_and_bad_input(browser: Any, srv: RunningServer) -> None:
    page = browser.new_page()
    page.goto(f"{srv.base_url}/dashboard")
    page.fill("#key", TEST_KEY)
    page.click("#signin-button")
    page.fill("#new-name", "to-edit")
    page.click("#create-button")
    page.locator("tr[data-name='to-edit'] [data-action='edit']").click()
    page.fill("#edit-rpm", "7")
    page.fill("#edit-models", "llama3.2:3b")
    page.click("#save-button")
    page.locator("tr[data-name='to-edit']", has_text="7").wait_for()
    listed = httpx.get(f"{srv.base_url}/admin/keys", headers={"authorization": f"Bearer {TEST_KEY}"}).json()["data"]
    edited = next(k for k in listed if k["name"] == "to-edit")
    assert edited["rpm"] == 7 and edited["models"] == ["llama3.2:3b"]
    # an unknown model is refused with the server's message, shown on the page
    page.fill("#new-name", "bad")
    page.fill("#new-models", "gpt-4")
    page.click("#create-button")
    page.locator("#error", has_text="unknown model").wait_for()


def test_receipt_tampering_and_the_server_fallback(browser: Any, srv: RunningServer) -> None:
    client = openai.OpenAI(base_url=srv.v1, api_key=TEST_KEY, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="llama3.2:1b", messages=[{"role": "user", "content": "sign this"}], max_tokens=3
    )
    request_id = raw.headers["x-request-id"]
    wait_for_record(srv, TEST_KEY, request_id)

    def tampered(route: Any) -> None:  # a record whose receipt claims more tokens than were signed
        body = route.fetch().json()
        body["receipt"]["receipt"]["completion_tokens"] += 1
        route.fulfill(json=body)

    page = browser.new_page()
    page.route(f"**/v1/requests/{request_id}", tampered)
    page.goto(f"{srv.base_url}/explorer?request_id={request_id}")
    page.fill("#key", TEST_KEY)
    page.click("#signin-button")
    page.locator("#receipt-status.bad", has_text="signature INVALID (checked in this browser").wait_for()

    # A browser without Ed25519 in Web Crypto: the server checks, and the page says so.
    plain = browser.new_page()
    plain.add_init_script(
        "crypto.subtle.importKey = () => Promise.reject(new DOMException('no Ed25519', 'NotSupportedError'));"
    )
    plain.goto(f"{srv.base_url}/explorer?request_id={request_id}")
    plain.fill("#key", TEST_KEY)
    plain.click("#signin-button")
    plain.locator("#receipt-status.ok", has_text="checked by the server: this browser cannot check Ed25519").wait_for()


def test_wrong_key_is_explained(browser: Any, srv: RunningServer) -> None:
    page = browser.new_page()
    page.goto(f"{srv.base_url}/explorer")
    page.fill("#key", "sk-pnv-not-a-real-key-00000000000000")
    page.click("#signin-button")
    page.locator("#recent", has_text="Incorrect API key").wait_for()


def test_pages_use_no_external_resources(srv: RunningServer) -> None:
    for path in (
        "/explorer",
        "/dashboard",
        "/static/common.js",
        "/static/explorer.js",
        "/static/dashboard.js",
        "/static/charts.js",
    ):
        response = httpx.get(f"{srv.base_url}{path}", timeout=10)
        assert response.status_code == 200
        assert "http://" not in response.text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in response.text


def test_dashboard_charts_the_last_24_hours(browser: Any, srv: RunningServer, tmp_path: Path) -> None:
    current = utcnow().replace(minute=0, second=0, microsecond=0)
    two_ago = current - timedelta(hours=2)
    written = [  # (at, model, prompt + completion tokens, ttft ms)
        (two_ago + timedelta(minutes=10), "llama3.2:1b", 30, 40.0),
        (two_ago + timedelta(minutes=20), "llama3.2:3b", 14, 80.0),
        (current, "llama3.2:1b", 10, 25.0),
        (current - timedelta(hours=30), "llama3.2:3b", 5000, 1.0),  # older than 24 h: not drawn
    ]
    database = Database(srv.data_dir / "pinaivu.db")
    log = RequestLog(database, Retention(days=30, rows=100_000))
    try:
        for i, (at, model, tokens, ttft) in enumerate(written):
            log.submit(
                FinishedRequest(
                    request_id=f"req_chart_{i}",
                    created_at=at,
                    kind="chat",
                    key_id="key_chart",
                    key_name="chart",
                    model_id=model,
                    status_code=200,
                    prompt_tokens=tokens // 2,
                    completion_tokens=tokens - tokens // 2,
                    ttft_ms=ttft,
                    input_sha256=input_digest("p"),
                )
            )
        assert log.flush()
    finally:
        log.close()
        database.close()

    page = browser.new_page(viewport={"width": 1100, "height": 1400})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{srv.base_url}/dashboard")
    page.fill("#key", TEST_KEY)
    page.click("#signin-button")
    page.locator("#chart .segment").first.wait_for()

    # 24 slots on a time axis labelled with the hours, the current hour last
    hours = [(current - timedelta(hours=23 - i)).strftime("%Y-%m-%dT%H:00:00Z") for i in range(24)]
    assert page.eval_on_selector_all("#chart g.slot", "gs => gs.map(g => g.dataset.hour)") == hours
    assert page.eval_on_selector_all("#chart .x-label", "ts => ts.map(t => t.textContent)") == [h[11:13] for h in hours]
    assert "0" in page.eval_on_selector_all("#chart .y-label", "ts => ts.map(t => t.textContent)")
    # two hours ago: one segment per model, stacked, in the 22nd slot, their values in the titles
    slot = page.locator(f"#chart g.slot[data-hour='{hours[21]}']")
    small, big = slot.locator("[data-model='llama3.2:1b']"), slot.locator("[data-model='llama3.2:3b']")
    assert "llama3.2:1b: 30 tokens" in small.locator("title").text_content()
    assert "llama3.2:3b: 14 tokens" in big.locator("title").text_content()
    y = {name: float(segment.get_attribute("y")) for name, segment in (("small", small), ("big", big))}
    assert y["big"] + float(big.get_attribute("height")) == pytest.approx(y["small"])  # 3b sits on 1b
    # within the slot's width, at its place on the axis
    box = small.bounding_box()
    plot = page.locator("#chart").bounding_box()
    assert box is not None and plot is not None
    assert plot["x"] + plot["width"] * 21 / 24 * 0.85 < box["x"] < plot["x"] + plot["width"] * 22 / 24
    # the empty hour between is empty; the current hour holds its one request; nothing from 30 h ago
    assert page.locator(f"#chart g.slot[data-hour='{hours[22]}'] .segment").count() == 0
    assert page.locator(f"#chart g.slot[data-hour='{hours[23]}'] .segment").count() == 1
    assert page.locator("#chart .segment").count() == 3
    legend = page.eval_on_selector_all("#legend [data-model]", "ss => ss.map(s => s.dataset.model)")
    assert legend == ["llama3.2:1b", "llama3.2:3b"]
    # hovering a segment shows its value
    small.hover()
    assert "llama3.2:1b: 30 tokens" in page.inner_text("#chart-readout")
    # requests and TTFT percentiles per hour
    bar = page.locator(f"#latency-chart .requests-bar[data-hour='{hours[21]}']")
    assert bar.get_attribute("data-requests") == "2"
    assert "2 requests" in bar.locator("title").text_content()
    p50 = page.locator(f"#latency-chart .ttft-p50[data-hour='{hours[21]}']")
    p95 = page.locator(f"#latency-chart .ttft-p95[data-hour='{hours[21]}']")
    assert "p50 40 ms" in p50.locator("title").text_content()
    assert "p95 80 ms" in p95.locator("title").text_content()
    p95.hover()
    assert "p95 80 ms" in page.inner_text("#chart-readout")
    assert page.locator(f"#latency-chart [data-hour='{hours[22]}']").count() == 0
    shot = tmp_path / "dashboard-charts.png"
    page.locator("#chart").scroll_into_view_if_needed()
    page.screenshot(path=str(shot), full_page=True)
    print(f"dashboard screenshot: {shot}")
    # a phone-sized screen draws the same 24 slots
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.locator("#chart g.slot").count() == 24
    page.screenshot(path=str(tmp_path / "dashboard-charts-phone.png"), full_page=True)
    print(f"dashboard screenshot (phone): {tmp_path / 'dashboard-charts-phone.png'}")
    assert errors == []
