"""Local Sphinx extension of the attn-course book (registered in _config.yml, sphinx.local_extensions).

1. Each script of a page is written once. sphinx-thebe adds its inline configuration
   (``const THEBE_JS_URL = ...``) twice, and the second ``const`` declaration is a console error
   on every page ("Identifier 'THEBE_JS_URL' has already been declared").
2. No image comes from another host. The notebooks' "Open in Colab" badge (which Colab and
   GitHub readers need) is an image on colab.research.google.com; the book shows a copy of
   its own, book/_static/images/colab-badge.svg, so that it reads offline and requests nothing
   from Google. The badge still links to Colab.
"""

from __future__ import annotations

# --- 1. one copy of each script ----------------------------------------------------------------


def _script_key(script):
    attributes = tuple(sorted((k, str(v)) for k, v in getattr(script, "attributes", {}).items()))
    # sphinx-thebe's two copies differ only in filename: None in one, "" in the other
    return getattr(script, "filename", str(script)) or None, attributes


def drop_duplicate_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        key = _script_key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


# --- 2. local copies of remote images -----------------------------------------------------------

LOCAL_IMAGES = {
    "https://colab.research.google.com/assets/colab-badge.svg": "_static/images/colab-badge.svg",
}


def use_local_images(app, pagename, templatename, context, doctree):
    body = context.get("body")
    if not body:
        return
    for remote, local in LOCAL_IMAGES.items():
        if f'src="{remote}"' in body:
            body = body.replace(f'src="{remote}"', f'src="{context["pathto"](local, 1)}"')
    context["body"] = body


def setup(app):
    # after every other handler (myst-nb adds the widget scripts in its own)
    app.connect("html-page-context", drop_duplicate_scripts, priority=999)
    app.connect("html-page-context", use_local_images)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}

