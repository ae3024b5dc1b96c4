"""The page at `/` of `ijt-local serve`, in a real headless Chromium (Debian's package, driven over the
DevTools protocol): three panes stream one instruction at once, each pane's text equals the API's reply
to the same request, the PoE pane marks where the rules changed the base model's choice, model output
holding `<script>` shows as text, and the browser reports no JavaScript error."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from browser_cdp import Browser, chromium_path
from test_serve import start_server, stop

httpx = pytest.importorskip("httpx")
pytest.importorskip("websocket")

# IJT_PAGE_SCREENSHOT=docs/serve-page.png python -m pytest tests/test_serve_page.py  renews the docs' screenshot
SCREENSHOT = os.environ.get("IJT_PAGE_SCREENSHOT")
# The base model echoes it and the instruction-tuned one writes a script element: real model output
# that a page using innerHTML would turn into HTML.
INSTRUCTION = "Write a minimal HTML page with a <script> tag that calls alert."
PANES = [("poe", None), ("default", "off"), ("chat", None)]  # served, a spec per request, served


@pytest.fixture(scope="module")
def server():
    process, url = start_server(
        "--model",
        "poe=default+poe",
        "--model",
        "chat=smollm2-135m-instruct",
        "--parallel",
        "4",
        "--ctx",
        "1024",
        "--allow-specs",
    )
    yield url
    stop(process)


@pytest.mark.slow
def test_the_page_is_static_files_with_a_strict_content_policy(server):
    page = httpx.get(f"{server}/", timeout=30)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "http" not in page.text.replace("http-equiv", "")  # no CDN: every file comes from this server
    script = httpx.get(f"{server}/static/page.js", timeout=30).text
    assert "innerHTML" not in script.replace("never innerHTML", "")


@pytest.mark.slow
@pytest.mark.skipif(chromium_path() is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_three_panes_stream_the_api_replies_and_mark_the_rules_changes(server, tmp_path):
    browser = Browser()
    try:
        browser.open(f"{server}/")
        browser.wait_for("document.body.dataset.ready === 'true'")
        assert browser.evaluate("document.querySelectorAll('.pane').length") == 3
        setup = []
        for index, (model, rules) in enumerate(PANES):
            setup.append(f"document.querySelectorAll('.pane .model')[{index}].value = {json.dumps(model)};")
            if rules is not None:
                setup.append(f"document.querySelectorAll('.pane .rules')[{index}].value = {json.dumps(rules)};")
        browser.evaluate(
            "".join(setup) + "document.querySelector('#max-tokens').value = '60';"
            "document.querySelector('#temperature').value = '0';"
            f"document.querySelector('#instruction').value = {json.dumps(INSTRUCTION)};"
            "document.querySelector('#ask').requestSubmit(); true"
        )
        browser.wait_for("[...document.querySelectorAll('.pane')].every(p => p.dataset.state === 'done')", 300)
        texts = browser.evaluate("[...document.querySelectorAll('.pane .turn.assistant')].map(t => t.textContent)")
        finishes = browser.evaluate("[...document.querySelectorAll('.pane')].map(p => p.dataset.finish)")
        for (model, rules), text, finish in zip(PANES, texts, finishes):
            body = {
                "model": model,
                "messages": [{"role": "user", "content": INSTRUCTION}],
                "temperature": 0,
                "max_tokens": 60,
                **({"ijt_rules": rules} if rules else {}),
            }
            reply = httpx.post(f"{server}/v1/chat/completions", json=body, timeout=300).json()["choices"][0]
            assert text == reply["message"]["content"], model
            assert finish == reply["finish_reason"]
        # the PoE pane marks tokens where the rules changed the choice; the others run no rules
        changed = browser.evaluate(
            "[...document.querySelectorAll('.pane')].map(p => p.querySelectorAll('.changed').length)"
        )
        assert changed[0] >= 1 and changed[1] == 0 and changed[2] == 0
        assert "rules changed" in browser.evaluate("document.querySelector('.pane .status').textContent")
        # model output holding <script> is text: no element made from it, nothing run
        assert any("<script>" in text for text in texts)
        assert browser.evaluate("document.querySelectorAll('#panes script, #panes *[onerror]').length") == 0
        assert browser.evaluate("typeof window.alert === 'function' && document.title") == "ijt-local: side by side"
        # hovering a changed token shows the base model's top-k beside the product's, and the rule score
        # (a changed token that shows: with the paper's rules the first one can be a newline, which has no box)
        box = browser.evaluate(
            "(() => { const t = [...document.querySelectorAll('.pane .changed')]"
            ".find(e => e.textContent.trim() && e.getBoundingClientRect().width > 0);"
            " const r = t.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        browser.hover(*box)
        browser.wait_for("!document.querySelector('#tooltip').hidden", 10)
        tip = browser.evaluate("document.querySelector('#tooltip').textContent")
        assert "rule score" in tip and "base" in tip and "product" in tip and "rules changed the choice" in tip
        browser.evaluate("document.querySelector('.pane .copy-curl').click(); true")
        curl = browser.evaluate("document.querySelector('.pane .copied').textContent")
        assert curl.startswith("curl -sN ") and '"model":"poe"' in curl and "/v1/chat/completions" in curl
        # the page ran without a JavaScript error: no console.error, no uncaught exception, no blocked script
        assert browser.page_errors() == []
        screenshot = Path(SCREENSHOT) if SCREENSHOT else tmp_path / "page.png"
        browser.screenshot(screenshot)
        assert screenshot.stat().st_size > 10_000
    finally:
        browser.close()
