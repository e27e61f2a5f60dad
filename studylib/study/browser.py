"""The built book opened in headless Chromium, page by page, as a reader would see it.

:func:`check_book` opens every HTML page of a built book (``file://``, so nothing is fetched from a network) at
1400 px and reports, per page, every problem a reader would meet:

- ``javascript``: an error in the browser's console (a script that failed, a resource that did not load);
- ``image``: an image that did not load, or a figure that is empty (one flat colour);
- ``link``: an internal link to a file that is not in the book;
- ``viewer``: an interactive surface viewer (plotly, inlined by nilearn's ``view_surf``) that did not draw;
- ``layout``: a page wider than the window (the reader has to scroll sideways);
- ``table``: on a narrative page (``book/``), a table wider than its box (columns hidden behind a scroll bar); on
  any page, a sortable table (itables) that did not render.

It saves a full-page screenshot of each page under ``screenshots/`` (the results pages are what a reviewer looks at).
Chromium and its WebDriver come from the system (Debian: ``apt-get install chromium chromium-driver``); Selenium
drives them with the system driver, so nothing is downloaded. :func:`find_chromium` says what is missing.
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd

__all__ = ["BrowserMissing", "check_book", "find_chromium"]

WIDTH = 1400
#: Screenshots are cut at this height (px): a long notebook page would otherwise give a huge image.
MAX_HEIGHT = 12000
_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_DRIVERS = ("chromedriver", "chromium-driver")


class BrowserMissing(RuntimeError):
    """Headless Chromium or its WebDriver is not installed here."""


@dataclass(frozen=True)
class Chromium:
    browser: str
    driver: str


def find_chromium() -> Chromium:
    """The system's Chromium and ChromeDriver.

    Raises
    ------
    BrowserMissing
        Naming what is missing and how to install it.
    """
    browser = next((found for name in _BROWSERS if (found := shutil.which(name))), None)
    driver = next((found for name in _DRIVERS if (found := shutil.which(name))), None)
    missing = [what for what, found in (("chromium", browser), ("chromium-driver", driver)) if not found]
    if missing:
        raise BrowserMissing(f"{' and '.join(missing)} not found on PATH; install them (Debian: apt-get install "
                             "chromium chromium-driver) to check the book in a browser")
    if importlib.util.find_spec("selenium") is None:
        raise BrowserMissing("the selenium package is not installed (pip install selenium)")
    return Chromium(browser, driver)


def _driver(chromium: Chromium):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium.browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--enable-unsafe-swiftshader", "--use-angle=swiftshader", f"--window-size={WIDTH},1000",
                     "--hide-scrollbars", "--allow-file-access-from-files"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=chromium.driver), options=options)


# Everything measured on one page, in one script (the page's own state, no network).
_PAGE_SCRIPT = """
const images = Array.from(document.images).map(i => ({src: i.currentSrc || i.src, complete: i.complete,
    width: i.naturalWidth, height: i.naturalHeight}));
const links = Array.from(document.querySelectorAll('a[href]')).map(a => a.href);
const frames = Array.from(document.querySelectorAll('iframe')).length;
const tables = Array.from(document.querySelectorAll('article table')).filter(
    t => t.getBoundingClientRect().width > t.parentElement.clientWidth + 2).map(
    t => (t.closest('section') && t.closest('section').querySelector('h1, h2, h3') ?
          t.closest('section').querySelector('h1, h2, h3').innerText : '?') +
         ' (' + Math.round(t.getBoundingClientRect().width) + ' px in ' + t.parentElement.clientWidth + ')');
const sortable = {declared: document.querySelectorAll("table[id^='itables_']").length,
                  drawn: document.querySelectorAll('.dt-container, .dataTables_wrapper').length};
return {images: images, links: links, frames: frames, tables: tables, sortable: sortable,
        scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
        height: document.documentElement.scrollHeight};
"""

# Inside a surface viewer's frame: did plotly load and draw its figure?
_VIEWER_SCRIPT = """
const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
return {plotly: typeof window.Plotly !== 'undefined', plots: plots.length,
        drawn: plots.filter(p => p.querySelector('.main-svg, canvas') &&
                                 p.getBoundingClientRect().width > 50 && p.getBoundingClientRect().height > 50).length,
        text: document.body ? document.body.innerText.slice(0, 200) : ''};
"""


def _empty_image(path: Path) -> bool:
    """A PNG of one flat colour (an empty figure)."""
    try:
        from PIL import Image

        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
    except Exception:  # not an image we can read: the browser's own check decides
        return False
    return bool(pixels.size) and bool((pixels == pixels.reshape(-1, 3)[0]).all())


def _local(url: str) -> Path | None:
    parsed = urlparse(url)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else None


def check_book(html: str | Path, screenshots: str | Path | None = None, *, pages: list[str] | None = None,
               chromium: Chromium | None = None, progress: bool = True, narrative: str = "book/") -> pd.DataFrame:
    """Open every page of a built book and list its problems (see the module docstring).

    Parameters
    ----------
    html : path
        The book's HTML folder (``_build/html``).
    screenshots : path, optional
        Folder for a full-page PNG per page (``<page path with / as __>.png``).
    pages : list of str, optional
        Pages relative to ``html`` (default: every ``*.html`` but Sphinx's ``genindex`` and ``search``).
    narrative : str
        Pages under this folder are the narrative pages: a table there must show every column (``table``); the
        notebooks' wide data frames may scroll inside their boxes.

    Returns
    -------
    DataFrame
        One row per problem: ``page``, ``kind`` and ``detail``; empty when every page is clean.
    """
    from ..progress import progress_bar

    html = Path(html).resolve()
    if not (html / "index.html").is_file():
        raise FileNotFoundError(f"no built book at {html} (index.html missing); build it with studylib book")
    chromium = chromium or find_chromium()
    if pages is None:
        pages = sorted(str(p.relative_to(html)) for p in html.rglob("*.html")
                       if p.name not in ("genindex.html", "search.html") and "_static" not in p.parts
                       and "_sources" not in p.parts)
    if screenshots is not None:
        screenshots = Path(screenshots)
        screenshots.mkdir(parents=True, exist_ok=True)
    problems: list[dict] = []
    driver = _driver(chromium)
    try:
        for page in progress_bar(pages, desc="checking the book in Chromium", unit="page", disable=not progress):
            path = html / page

            def report(kind: str, detail: str, page: str = page) -> None:
                problems.append({"page": page, "kind": kind, "detail": detail})

            driver.get_log("browser")  # drop what the previous page logged late
            driver.set_window_size(WIDTH, 1000)
            driver.get(path.as_uri())
            state = driver.execute_script(_PAGE_SCRIPT)
            for image in state["images"]:
                if not image["complete"] or image["width"] == 0:
                    report("image", f"did not load: {image['src']}")
                elif (local := _local(image["src"])) is not None and local.suffix.lower() == ".png" \
                        and _empty_image(local):
                    report("image", f"empty figure (one flat colour): {local.name}")
            for link in sorted(set(state["links"])):
                local = _local(link)
                if local is not None and not local.exists():
                    report("link", f"broken internal link: {link}")
            if page.startswith(narrative):
                for table in state["tables"]:
                    report("table", f"columns hidden (sideways scrolling inside the table): {table}")
            sortable = state["sortable"]
            if sortable["drawn"] < sortable["declared"]:
                report("table", f"{sortable['declared'] - sortable['drawn']} of {sortable['declared']} sortable "
                                "tables (itables) did not render")
            if state["scrollWidth"] > state["innerWidth"] + 1:
                report("layout", f"page is {state['scrollWidth']} px wide in a {state['innerWidth']} px window "
                                 "(sideways scrolling)")
            for index, frame in enumerate(driver.find_elements("tag name", "iframe")):
                driver.switch_to.frame(frame)
                viewer = driver.execute_script(_VIEWER_SCRIPT)
                driver.switch_to.default_content()
                if viewer["plots"] and (not viewer["plotly"] or viewer["drawn"] < viewer["plots"]):
                    report("viewer", f"surface viewer {index + 1}: {viewer['drawn']} of {viewer['plots']} plots "
                                     f"drawn (plotly loaded: {viewer['plotly']}); {viewer['text']!r}")
            for entry in driver.get_log("browser"):
                if entry.get("level") == "SEVERE":
                    report("javascript", entry.get("message", "")[:500])
            if screenshots is not None:
                driver.set_window_size(WIDTH, min(MAX_HEIGHT, max(1000, int(state["height"]))))
                driver.save_screenshot(str(screenshots / (page.replace("/", "__").removesuffix(".html") + ".png")))
    finally:
        driver.quit()
    return pd.DataFrame(problems, columns=["page", "kind", "detail"])
