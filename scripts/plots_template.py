#!/usr/bin/env python3
"""Write .dvc/plots-offline.html: DVC's page for `dvc plots show/diff` with Vega inlined.

DVC's own page loads Vega, Vega-Lite and Vega-Embed from a CDN, so without a network
every interactive chart is blank. This template carries the three libraries inline,
as the pinned vl-convert-python bundles them (requirements.lock), and leaves out DVC's
scripts placeholder, where DVC would add the CDN links; ``.dvc/config`` makes it the
default (``[plots] html_template``).

    scripts/plots_template.py            # rewrite .dvc/plots-offline.html
    scripts/plots_template.py --check    # exit 1 if it is not what the pinned bundle gives
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / ".dvc" / "plots-offline.html"
# DVC's Vega templates write Vega-Lite 5 specs; the newest 5.x that vl-convert bundles.
VEGA_LITE = "5.21"
# DVC fills these in; a template must have the plots one (dvc_render.html.HTML).
PLACEHOLDERS = ("{refresh_tag}", "{plot_divs}")

PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <!-- {versions}, inlined by scripts/plots_template.py so that the charts draw
         without a network. -->
    <script type="text/javascript">
{bundle}
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


def page() -> str:
    """The template's text, from the installed vl-convert-python."""
    import vl_convert

    bundle = vl_convert.javascript_bundle(vl_version=VEGA_LITE)
    for text in ("</script", *PLACEHOLDERS, "{scripts}"):
        if text in bundle:  # it would end the script early, or DVC would replace it
            raise SystemExit(f"the Vega bundle contains {text!r}; it cannot be inlined")
    versions = (f"Vega {vl_convert.get_vega_version()}, Vega-Lite {VEGA_LITE}, Vega-Embed "
                f"{vl_convert.get_vega_embed_version()} from vl-convert-python")
    return PAGE.replace("{versions}", versions).replace("{bundle}", bundle)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="only check that the template is up to date")
    args = parser.parse_args(argv)
    text = page()
    if args.check:
        current = TEMPLATE.read_text(encoding="utf-8") if TEMPLATE.is_file() else ""
        if current != text:
            print(f"{TEMPLATE.relative_to(ROOT)} is stale: run scripts/plots_template.py",
                  file=sys.stderr)
            return 1
        return 0
    TEMPLATE.write_text(text, encoding="utf-8")
    print(f"wrote {TEMPLATE.relative_to(ROOT)} ({len(text):,} characters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
