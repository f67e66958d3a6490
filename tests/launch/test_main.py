"""launch/main.py end to end in a subprocess: PNG grid written, rerun resumes, bad fields rejected."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ["--config.data.image_size=8", "--config.model.image_size=8", "--config.model.base_channels=8",
        "--config.model.channel_mults=(1,2)", "--config.model.attention_resolutions=(4,)",
        "--config.model.norm_num_groups=4", "--config.train.batch_size=16", "--config.train.log_every=2",
        "--config.train.checkpoint_every=2", "--config.train.sample_every=4", "--config.train.num_samples=4",
        "--config.train.sample_steps=3"]


def _main(*args):
  # every program cached, so the rerun's cache listing cannot depend on how long a compile took under load
  env = {**os.environ, "JAXDIFF_PROGRESS": "0", "JAXDIFF_COMPILATION_CACHE_MIN_SECONDS": "0"}
  return subprocess.run([sys.executable, os.path.join(ROOT, "launch", "main.py"), *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600)


def test_ddpm_digits_writes_grid_and_resumes(tmp_path):
  wd, cache = str(tmp_path / "wd"), str(tmp_path / "xla")
  r = _main("--config=configs/ddpm_digits.py", f"--workdir={wd}", "--config.train.num_steps=4", *TINY,
            f"--compilation_cache={cache}")
  assert r.returncode == 0, r.stderr[-3000:]
  assert any(f.endswith(".png") for f in os.listdir(os.path.join(wd, "samples")))
  compiled = sorted(os.listdir(cache))
  assert compiled and f"compilation_cache={cache}" in r.stdout
  r = _main("--config=configs/ddpm_digits.py", f"--workdir={wd}", "--config.train.num_steps=6", *TINY,
            f"--compilation_cache={cache}")
  assert r.returncode == 0, r.stderr[-3000:]
  assert sorted(os.listdir(cache)) == compiled  # the rerun loaded every program it needed from the cache
  rows = [json.loads(l) for l in open(os.path.join(wd, "metrics.jsonl"))]
  assert {"step": 4, "resumed_from": 4} in rows
  assert [r["step"] for r in rows if "loss" in r] == [2, 4, 6]


def test_compilation_cache_location_and_off_switch(monkeypatch, tmp_path):
  from jaxdiff.parallel import compilation_cache_dir
  monkeypatch.delenv("JAXDIFF_COMPILATION_CACHE", raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  assert compilation_cache_dir() == str(tmp_path / "jaxdiff" / "xla")
  assert compilation_cache_dir("off") is None and compilation_cache_dir(str(tmp_path / "c")) == str(tmp_path / "c")
  monkeypatch.setenv("JAXDIFF_COMPILATION_CACHE", "off")
  assert compilation_cache_dir() is None and compilation_cache_dir("/x") == "/x"


def test_unknown_config_field_is_an_error(tmp_path):
  r = _main("--config=configs/ddpm_digits.py", f"--workdir={tmp_path}", "--config.train.num_stepz=3")
  assert r.returncode != 0 and "num_stepz" in r.stderr
