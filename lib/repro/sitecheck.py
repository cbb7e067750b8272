"""Open every page of the built site in headless Chromium and fail on anything broken.

    python -m repro.sitecheck _build/html [--screenshots _build/screenshots]

Serves the site on localhost, visits each HTML page, and reports a page that does not load,
a JavaScript error, a broken image (not loaded or zero-sized) or a local link whose target
file or anchor does not exist. Saves screenshots of the landing page, the scoreboard and
the first chapter. Needs Debian's ``chromium`` (``apt-get install chromium``) and the
``playwright`` Python package (it drives the system browser; nothing is downloaded).
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


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit("no Chromium found: install it with `apt-get install chromium`")


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
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_FLAGS)
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
    p = argparse.ArgumentParser(prog="python -m repro.sitecheck")
    p.add_argument("site", type=Path, nargs="?", default=Path("_build/html"))
    p.add_argument("--screenshots", type=Path, default=Path("_build/screenshots"))
    a = p.parse_args(argv)
    problems = check_site(a.site, a.screenshots)
    n = len(pages_of(a.site.resolve()))
    for line in problems:
        print(line)
    print(f"site check: {n} pages, {len(problems)} problems; screenshots in {a.screenshots}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
