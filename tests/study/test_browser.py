"""The book in headless Chromium: a small site with one clean page and one page with every problem the check looks
for (skipped, saying why, where Chromium is not installed; CI installs it)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from studylib.study.browser import BrowserMissing, check_book, find_chromium


@pytest.fixture(scope="module")
def chromium():
    try:
        return find_chromium()
    except BrowserMissing as missing:
        pytest.skip(f"no browser check here: {missing}")


def _png(path, pixels):
    from PIL import Image

    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(path)


def _site(root):
    (root / "pages").mkdir(parents=True)
    rng = np.random.default_rng(0)
    _png(root / "figure.png", rng.integers(0, 255, size=(40, 60, 3)))
    _png(root / "blank.png", np.full((40, 60, 3), 255))
    (root / "index.html").write_text(
        "<html><body><h1>Results</h1><img src='figure.png'><a href='pages/bad.html'>next</a>"
        "<a href='#top'>top</a><a href='https://example.org/'>outside</a></body></html>")
    (root / "pages" / "bad.html").write_text(
        "<html><body><img src='../missing.png'><img src='../blank.png'><a href='../nowhere.html'>gone</a>"
        "<div style='width: 3000px'>wide table</div>"
        "<script>undefinedFunction();</script>"
        "<iframe srcdoc=\"<div class='js-plotly-plot' style='width:300px;height:300px'></div>\"></iframe>"
        "<table id='itables_0001'><tr><td>never made sortable</td></tr></table>"
        "</body></html>")
    (root / "book").mkdir()
    table = "<table style='width: 900px'><tr><th>cohort</th><th>paper</th></tr></table>"
    box = f"<article><section><h2>Table 1</h2><div style='width: 300px; overflow-x: auto'>{table}</div></section>"
    (root / "book" / "results.html").write_text(f"<html><body>{box}</article></body></html>")
    (root / "pages" / "wide_notebook.html").write_text(f"<html><body>{box}</article></body></html>")
    return root


def test_clean_page_passes_and_every_problem_is_named(chromium, tmp_path):
    site = _site(tmp_path / "html")
    problems = check_book(site, tmp_path / "shots", chromium=chromium, progress=False)
    assert set(problems["page"]) == {"pages/bad.html", "book/results.html"}, problems.to_string()
    # a narrative page must show every column; a notebook's wide table may scroll in its box
    assert problems[problems["page"] == "book/results.html"]["detail"].tolist() == [
        "columns hidden (sideways scrolling inside the table): Table 1 (900 px in 300)"]
    found = problems.groupby("kind")["detail"].apply(" | ".join)
    assert "missing.png" in found["image"] and "empty figure" in found["image"] and "blank.png" in found["image"]
    assert "nowhere.html" in found["link"]
    assert "undefinedFunction" in found["javascript"]
    assert "sideways" in found["layout"]
    assert "1 of 1 sortable tables (itables) did not render" in found["table"]
    assert "0 of 1 plots drawn (plotly loaded: False)" in found["viewer"]
    shots = sorted(p.name for p in (tmp_path / "shots").glob("*.png"))
    assert shots == ["book__results.png", "index.png", "pages__bad.png", "pages__wide_notebook.png"]


def test_no_book_is_a_clear_error(chromium, tmp_path):
    with pytest.raises(FileNotFoundError, match="no built book"):
        check_book(tmp_path, chromium=chromium)


def test_missing_browser_is_named(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(BrowserMissing, match="chromium and chromium-driver not found"):
        find_chromium()


def test_check_book_command_without_a_built_book(tmp_path):
    from tests.support import PROJECT

    done = subprocess.run([sys.executable, "-m", "studylib.study.cli", "check-book", "--params",
                           str(PROJECT / "params" / "smoke.yaml"), "--results", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no built book" in done.stderr
