"""Each page loads each script once.

Jupyter Book 1.x registers sphinx-thebe's set-up script twice, so every page declared ``const THEBE_JS_URL`` twice
and the browser raised a SyntaxError on each page (seen by the browser check, ``studylib check-book``).
"""

from __future__ import annotations


def _key(script) -> tuple:
    # an inline script is registered with filename None by one extension and "" by another: the same script
    filename = getattr(script, "filename", script) or ""
    return (str(filename), tuple(sorted(getattr(script, "attributes", {}).items())))


def _scripts_once(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        key = _key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def setup(app):
    app.connect("html-page-context", _scripts_once, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
