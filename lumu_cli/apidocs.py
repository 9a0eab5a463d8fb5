"""The interactive API docs at /api/docs: Swagger UI over /openapi.json, served by lumu itself.

Swagger UI's files come from the swagger-ui-py package (its `static` folder: swagger-ui-dist's
files, Apache-2.0, the LICENSE beside them), read from the installed package the first time
they are asked for, so the page works air-gapped: it loads nothing but lumu's own paths. The
package's Python code is never imported; only its folder is found. What lumu writes is the page
that starts Swagger UI, below.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

__all__ = ["ASSETS", "DOCS", "asset", "page"]

DOCS = "/api/docs"
# The files the page loads, and their content types (nothing else of the folder is served).
ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "LICENSE": "text/plain; charset=utf-8",
}

_PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>lumu API</title>
<link rel="stylesheet" href="{DOCS}/swagger-ui.css">
<link rel="icon" type="image/png" href="{DOCS}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{DOCS}/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{
  url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
  validatorUrl: null,  // no badge from validator.swagger.io: nothing leaves this server
}});
</script>
</body>
</html>
"""


def page() -> bytes:
    """The page that starts Swagger UI on /openapi.json, with lumu's own copies of its files."""
    return _PAGE.encode()


@cache
def asset(name: str) -> tuple[str, bytes] | None:
    """(content type, bytes) of one of Swagger UI's files, read once; None for any other name."""
    kind = ASSETS.get(name)
    if kind is None:
        return None
    return kind, (_folder() / name).read_bytes()


@cache
def _folder() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("swagger_ui")  # found, not imported (its code needs Jinja)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the swagger-ui-py package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"
