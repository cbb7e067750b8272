"""Open every page of the built site in headless Chromium and fail on anything broken.

    python -m repro.tools.sitecheck _build/html [--screenshots _build/screenshots]

Serves the site on localhost, visits each HTML page, and reports a page that does not load,
a JavaScript error, a broken image (not loaded or zero-sized) or a local link whose target
file or anchor does not exist. Saves screenshots of the landing page, the scoreboard and
the first chapter. Needs a Chromium (``make browser`` provides one: see :func:`find_chromium`)
and the ``playwright`` Python package, which drives that browser.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
_REFRESH = re.compile(r'http-equiv="refresh"[^>]*url=([^"\'>]+)', re.I)
SKIP = ("_static", "_sources", "_sphinx_design_static", "_images", "jupyter_execute")


BROWSER_HELP = ("no Chromium found. `make test` opens the built site in headless Chromium: run `make browser` "
                "(as root it installs Debian's `chromium` with apt-get; otherwise it tries Playwright's own download, "
                "`.venv/bin/python -m playwright install chromium`, which needs internet), install your distribution's "
                "chromium package yourself, or set CHROMIUM=/path/to/chromium")


def find_chromium() -> str:
    """$CHROMIUM, else a system Chromium on PATH, else a browser Playwright downloaded; else a clear exit."""
    import os
    if os.environ.get("CHROMIUM"):
        if shutil.which(os.environ["CHROMIUM"]):
            return shutil.which(os.environ["CHROMIUM"])
        raise SystemExit(f"CHROMIUM={os.environ['CHROMIUM']} is not an executable")
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    try:
        from playwright.sync_api import sync_playwright
        with sync_playwright() as pw:
            path = pw.chromium.executable_path
        if path and Path(path).is_file():
            return path
    except Exception:  # no playwright, or no browser of its own: fall through to the message
        pass
    raise SystemExit(BROWSER_HELP)


def pages_of(site: Path) -> list[str]:
    return sorted(str(p.relative_to(site)) for p in site.rglob("*.html")
                  if not any(part in SKIP for part in p.relative_to(site).parts))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(site: Path):
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def check_site(site: Path, screenshots: Path | None = None) -> list[str]:
    from playwright.sync_api import sync_playwright

    site = site.resolve()
    if not (site / "index.html").exists():
        raise SystemExit(f"no built site in {site}: run `make book` (or `make site`) first")
    server = serve(site)
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    problems: list[str] = []
    anchors: dict[str, set[str]] = {}
    links: list[tuple[str, str]] = []
    executable = find_chromium()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(f"JavaScript error: {e}"))
        page.on("console", lambda m: errors.append(f"console error: {m.text}")
                if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
        page.on("response", lambda r: errors.append(f"missing resource {r.status} {r.url}") if r.status >= 400 else None)
        for rel in pages_of(site):
            redirect = _REFRESH.search((site / rel).read_text(errors="replace"))
            if redirect:  # a meta-refresh page (index.html): check its target, not its rendering
                links.append((rel, redirect.group(1)))
                continue
            errors.clear()
            response = page.goto(base + rel, wait_until="load")
            if response is None or not response.ok:
                problems.append(f"{rel}: does not load ({response.status if response else 'no response'})")
                continue
            broken = page.eval_on_selector_all(
                "img", "imgs => imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute('src'))")
            problems += [f"{rel}: broken image {src}" for src in broken]
            problems += [f"{rel}: {e}" for e in errors]
            anchors[rel] = set(page.eval_on_selector_all("[id]", "els => els.map(e => e.id)"))
            for href in page.eval_on_selector_all("a[href]", "as => as.map(a => a.getAttribute('href'))"):
                links.append((rel, href))
        if screenshots:
            screenshots.mkdir(parents=True, exist_ok=True)
            chapters = [p for p in pages_of(site) if p.startswith("book/chapters/")]
            for name, rel in (("landing", "book/intro.html"), ("scoreboard", "book/scoreboard.html"),
                              ("chapter", chapters[0] if chapters else None)):
                if rel and (site / rel).exists():
                    page.goto(base + rel, wait_until="load")
                    page.screenshot(path=str(screenshots / f"{name}.png"), full_page=False)
        browser.close()
    server.shutdown()
    problems += broken_local_links(site, links, anchors)
    return problems


def broken_local_links(site: Path, links, anchors) -> list[str]:
    problems = []
    for page, href in links:
        if urlparse(href).scheme in ("http", "https", "mailto", "javascript") or href.startswith("//"):
            continue
        target, fragment = urldefrag(href)
        target_rel = (Path(page).parent / unquote(target)).as_posix() if target else page
        target_path = (site / target_rel).resolve()
        if target and not target_path.exists():
            problems.append(f"{page}: broken link {href}")
            continue
        key = str(target_path.relative_to(site)) if target_path.is_relative_to(site) else None
        if fragment and key in anchors and fragment not in anchors[key]:
            problems.append(f"{page}: link to missing anchor {href}")
    return problems


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m repro.tools.sitecheck")
    p.add_argument("site", type=Path, nargs="?", default=Path("_build/html"))
    p.add_argument("--screenshots", type=Path, default=Path("_build/screenshots"))
    p.add_argument("--which-browser", action="store_true", help="print the Chromium that would be used, or why none")
    a = p.parse_args(argv)
    if a.which_browser:
        print(find_chromium())
        return 0
    problems = check_site(a.site, a.screenshots)
    n = len(pages_of(a.site.resolve()))
    for line in problems:
        print(line)
    print(f"site check: {n} pages, {len(problems)} problems; screenshots in {a.screenshots}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
