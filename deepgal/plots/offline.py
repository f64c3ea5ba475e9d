"""An HTML template for ``dvc plots show`` / ``dvc plots diff`` that renders with no network.

DVC's own page loads Vega, Vega-Lite and Vega-Embed from a CDN through its ``{scripts}``
placeholder, so offline its charts stay blank. This template has no ``{scripts}`` placeholder
(DVC then drops those CDN tags) and carries the three libraries inline instead, bundled by
vl-convert-python (a dependency of the project, so ``pip install -e .`` brings them; nothing is
fetched at run time). DVC reads it through ``plots.html_template`` in ``.dvc/config``.
"""

from __future__ import annotations

from pathlib import Path

from deepgal.utils import atomic_write_text

# The bundle is an ES module's body made to run in a classic script (DVC's per-chart scripts
# call the global vegaEmbed synchronously, before a deferred module would have run): wrapped in
# a strict-mode function, its top-level names cannot clash with DVC's global `var spec`.
# DVC fills these three; a bundled library containing one of them would be mangled by DVC's
# plain string replacement, and "</script" would end the inline script early.
PLACEHOLDERS = ("{plot_divs}", "{refresh_tag}", "{scripts}")

PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>DVC Plot</title>
    <!-- Vega @VEGA@, Vega-Lite @VL@ and Vega-Embed @EMBED@, inlined by deepgal (vl-convert-python
         @VLC@) so the page renders with no network. -->
    <script type="text/javascript">
(function () {
"use strict";
@BUNDLE@
})();
    </script>
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def vegalite_version() -> str:
    """The newest Vega-Lite 5.x vl-convert ships: DVC writes its specs against the v5 schema."""
    import vl_convert

    fives = [v for v in vl_convert.get_vegalite_versions() if v.startswith("5.")]
    if not fives:
        raise RuntimeError(
            f"vl-convert-python {vl_convert.__version__} ships no Vega-Lite 5.x "
            f"(has {vl_convert.get_vegalite_versions()}); DVC's plots need v5: "
            "install a vl-convert-python that has it (see pyproject.toml)"
        )
    return max(fives, key=lambda v: tuple(int(p) for p in v.split(".")))


def html_template() -> str:
    """The template's text: DVC's page with the Vega libraries inline (about 0.9 MB)."""
    import vl_convert

    vl = vegalite_version()
    bundle = vl_convert.javascript_bundle(vl_version=vl)
    bad = [p for p in (*PLACEHOLDERS, "</script") if p in bundle]
    if bad:
        raise RuntimeError(
            f"the Vega bundle of vl-convert-python {vl_convert.__version__} "
            f"contains {bad}, which would break the HTML template"
        )
    page = PAGE
    # The bundle goes in last, so no marker is ever looked for inside the libraries' code.
    for key, value in (
        ("@VEGA@", vl_convert.get_vega_version()),
        ("@VL@", vl),
        ("@EMBED@", vl_convert.get_vega_embed_version()),
        ("@VLC@", vl_convert.__version__),
        ("@BUNDLE@", bundle),
    ):
        page = page.replace(key, value)
    return page


def write_html_template(path: str | Path) -> Path:
    """Write :func:`html_template` at ``path`` atomically (parent dirs created)."""
    atomic_write_text(path, html_template())
    return Path(path)
