"""Screenshots of a running server's playground and /docs, as a person sees them.

    .venv/bin/python scripts/playground_screenshots.py http://127.0.0.1:8000 OUT_DIR

Needs a server with no keys (`qtts demo --open`) and Debian's chromium. Every request outside
127.0.0.1 is blocked (as offline). Takes: the playground at 1280x900 before and after
Synthesize (is the result in view?), at 400 px wide (full page), and /docs. The screenshots
in docs/screenshots/issue-20/ were made with it: `before/` from the commit before issue 20
(2e39014), `after/` from the commit that closed it. The browser tests
(tests/graph/test_playground_browser.py) assert what these show.
"""
import sys
from pathlib import Path

from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright


def main(base: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])

        def context(width: int):
            ctx = browser.new_context(viewport={"width": width, "height": 900})
            ctx.route("**/*", lambda r: r.continue_() if r.request.url.startswith(
                "http://127.0.0.1") else r.abort())
            page = ctx.new_page()
            page.goto(base + "/playground/", wait_until="networkidle")
            return page

        page = context(1280)
        page.screenshot(path=str(out / "playground-1280x900-before-synthesize.png"))
        page.click("#synthesize")
        page.wait_for_function(
            "/^Done/.test(document.getElementById('status').textContent)", timeout=120_000)
        page.screenshot(path=str(out / "playground-1280x900-after-synthesize.png"))
        context(400).screenshot(path=str(out / "playground-400px.png"), full_page=True)
        page.goto(base + "/docs", wait_until="networkidle")
        try:  # Swagger UI's operations; a page whose assets did not load stays blank
            page.wait_for_selector(".opblock", timeout=10_000)
        except PlaywrightTimeout:
            print("/docs rendered no operation")
        page.screenshot(path=str(out / "docs-network-blocked.png"))
        browser.close()
    print("screenshots in", out)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
