"""Sphinx configuration of the vlm-tutorial site.

Build it with ``python tools/build_docs.py`` (``make docs``): that executes the
notebooks with papermill when their executed copies are missing or stale, then
runs ``sphinx-build -W --keep-going -n`` and checks every internal link. Nothing
here reaches the network: no intersphinx, no remote assets, no notebook execution
(MyST-NB renders the executed copies as they are).
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(ROOT))

import vlm_tutorial  # noqa: E402

project = "vlm-tutorial"
author = "vlm-tutorial contributors"
copyright = "vlm-tutorial contributors, Apache-2.0"  # noqa: A001
release = vlm_tutorial.__version__
version = release

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",  # Google-style sections; vlm_api skips it on attributes
    "vlm_api",
    "vlm_errors",
    "vlm_notebooks",
]

exclude_patterns = ["_build", "**.ipynb_checkpoints", "diagram"]
templates_path: list[str] = []
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}

# Warnings are errors (-W) and every cross-reference must resolve (-n). Names from
# other libraries cannot resolve without intersphinx (which would need the network).
nitpicky = True
nitpick_ignore_regex = [
    # Qualified names of other libraries and of the standard library (torch.Tensor,
    # argparse.ArgumentParser...); every name of this package must resolve.
    (r"py:.*", r"(?!vlm_tutorial\.)[A-Za-z_]\w*\..+"),
    (r"py:mod", r"(?!vlm_tutorial\b).+"),
    # vlm_api resolves a package name that exists but is not on the API page (a
    # module-level helper the reference leaves out) as plain code; a name that does
    # not exist at all still fails the build.
    # Bare names of other libraries' types, as type hints write them.
    (
        r"py:.*",
        r"(Path|PathLike|Image|Tensor|BatchFeature|Iterator|Iterable|Sequence|Mapping|Callable)",
    ),
]

# Commands stay as typed: no en dash for "--kit", no curly quotes in code-like prose
# (tests/tools/test_doc_claims.py checks the built pages for a lost "--").
smartquotes = False

# MyST / MyST-NB: notebooks are executed before Sphinx runs (papermill, the main job).
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "off"
nb_merge_streams = True
nb_output_stderr = "show"
# No widget JavaScript from a CDN (progress bars fall back to their text form).
nb_ipywidgets_js: dict[str, dict[str, str]] = {}
# The reading order of the notebooks (any others follow by name).
vlm_notebooks_order = ["formats_overview", "qwen2_5_vl", "llama4"]

# API reference.
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_class_signature = "separated"
autodoc_preserve_defaults = True
autosummary_generate = False  # vlm_api writes the per-module pages itself
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# Theme: every asset is shipped in the wheels; nothing is fetched when a page opens.
html_theme = "sphinx_book_theme"
html_title = "vlm-tutorial"
html_static_path = ["_static"]
html_css_files = ["vlm.css"]  # wide tables and code at a 1280 px window
html_last_updated_fmt = None
html_theme_options = {
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "use_download_button": True,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "home_page_in_toc": True,
}
