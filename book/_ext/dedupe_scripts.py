"""Drop duplicate <script> entries from each HTML page.

sphinx-thebe 0.3.1 registers its inline configuration script once per read of the
environment; a full build (`jupyter-book build --all`) reads it twice, so every page
declared `const THEBE_JS_URL` twice and threw a JavaScript error in the browser.
"""


def _dedupe(app, pagename, templatename, context, doctree):
    seen, unique = set(), []
    for script in context.get("script_files", []):
        key = (getattr(script, "filename", str(script)) or None,  # "" and None both mean inline
               tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    if "script_files" in context:
        context["script_files"][:] = unique


def setup(app):
    app.connect("html-page-context", _dedupe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
