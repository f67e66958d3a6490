"""Sphinx configuration of jaxdiff's API reference (built by scripts/docs.sh into docs/_build/html)."""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

project = "jaxdiff"
author = "jaxdiff developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # signatures stay readable; the docstrings say shapes and spaces
autodoc_default_options = {"members": True, "imported-members": True, "undoc-members": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
html_theme = "alabaster"
exclude_patterns = ["_build"]
