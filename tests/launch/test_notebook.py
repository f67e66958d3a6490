"""notebooks/quickstart.ipynb executes top to bottom (tiny step counts), as a user would run it."""
import os

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_quickstart_notebook_executes(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXDIFF_QUICKSTART_STEPS", "4")
  monkeypatch.setenv("JAXDIFF_QUICKSTART_SAMPLE_STEPS", "2")  # the grid's 100 DDIM steps were most of the run
  monkeypatch.setenv("JAXDIFF_QUICKSTART_WORKDIR", str(tmp_path / "wd"))
  monkeypatch.setenv("JAXDIFF_REPO", ROOT)
  nb = nbformat.read(os.path.join(ROOT, "notebooks", "quickstart.ipynb"), as_version=4)
  nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                          resources={"metadata": {"path": str(tmp_path)}}).execute()
  out = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
  assert "accuracy after purification" in out and "certified predictions" in out
  assert os.listdir(tmp_path / "wd" / "samples")
