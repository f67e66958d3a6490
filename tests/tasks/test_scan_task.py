"""The scan task with a tiny random-weight U-Net: the pinned scan.json, the evidence sheet, and bad inputs
refused with one clear message before any work."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_exports
from jaxdiff.errors import ConfigError, ModelFileError
from jaxdiff.tasks.scan import run_scan


def _tiny(tmp_path):
  from configs import scan
  unet, cnn, _ = tiny_exports(tmp_path, 8, 1)
  c = scan.get_config()
  c.scan.update(model=unet, encoder="classifier", encoder_path=cnn, iterations=2, batch=4, num_steps=2,
                evidence_samples=3, elijah_iterations=2, samplers=("ddim",))
  return c


def test_scan_tiny_writes_the_verdict_and_the_evidence(tmp_path):
  c = _tiny(tmp_path)
  c.scan.trojan_gammas = (0.6,)  # and TrojDiff's backdoor sampling
  wd = tmp_path / "wd"
  os.makedirs(wd)
  r = run_scan(c, str(wd))
  saved = json.load(open(wd / "scan.json"))
  assert saved["backdoored"] == r["backdoored"] and isinstance(saved["backdoored"], bool)
  assert 0 < saved["mscr"] <= 1 and saved["trigger_png"] == "trigger.png"
  assert set(saved["elijah"]) >= {"uniformity", "total_variation", "loss"}
  assert set(saved["samplers"]) == {"ddim", "ddim+trojdiff0.6"} and "removal" not in saved
  assert saved["samplers"]["ddim+trojdiff0.6"]["trojan_gamma"] == 0.6 and saved["samplers"]["ddim"]["trojan_gamma"] == 0
  assert saved["samplers"]["ddim"]["init_offset"] in (-1.0, -0.5, 0.0, 0.5, 1.0)  # the default start: race
  c0 = saved["samplers"]["ddim"]["init_offset"]
  ddim = saved["samplers"]["ddim"]  # scan.restarts = 5: another run only after an unconfirmed hit
  assert ddim["attempts"] == 1 + max(h["attempt"] for h in ddim["history"]) <= 6
  assert "| iterations | runs | c |" in open(wd / "scan.md").read() and f"| {c0:+.1f} |" in open(wd / "scan.md").read()
  for f in ("trigger.png", "evidence.png", "scan.md"):
    assert os.path.getsize(wd / f) > 100, f


def test_scan_with_removal_exports_a_pruned_repaired_model(tmp_path, monkeypatch):
  from jaxdiff.backdoor import pruning
  from jaxdiff.convert import load_model
  c = _tiny(tmp_path)
  c.data.image_size = 8
  c.scan.update(remove=True, remove_ratio=0.2, finetune_samples=8, synthetic_steps=2, finetune_steps=2,
                finetune_batch=4, fid_samples=4, taylor_batch=2, taylor_threshold=0.99, fid_classifier=c.scan.encoder_path,
                samplers=("ddpm",), trojan_gammas=(0.6,))
  forms, scores = [], pruning.importance_scores
  monkeypatch.setattr(pruning, "importance_scores", lambda *a, gamma=0.0, **k: forms.append(gamma)
                      or scores(*a, gamma=gamma, **k))
  wd = tmp_path / "wd"
  r = run_scan(c, str(wd))
  saved = json.load(open(wd / "scan.json"))
  m = saved["removal"]
  assert m == r["removal"]
  # the repair reads the verdict's trigger in the form of the sampling that inverted it
  assert forms == [m["trojan_gamma"]] == [saved["samplers"][saved["mscr_sampler"]]["trojan_gamma"]]
  assert set(m) >= {"pruned_fraction", "asr_before", "asr_after", "fid_before", "fid_after"}
  assert 0 < m["pruned_fraction"] <= 0.2 and m["max_layer_fraction"] <= 0.2
  assert 0 <= m["asr_before"] <= 1 and 0 <= m["asr_after"] <= 1 and m["fid_before"] >= 0 and m["fid_after"] >= 0
  _, v, meta = load_model(str(wd / "repaired"), kind="unet")
  assert meta["repaired_from"] == c.scan.model and meta["pruned_fraction"] == m["pruned_fraction"]
  conv = v["params"]["down_blocks_1_resnets_0"]["conv1"]["kernel"]  # 16 channels: ⌊0.2·16⌋ = 3 zeroed
  assert int((abs(conv).reshape(-1, conv.shape[-1]).max(0) == 0).sum()) == 3
  md = open(wd / "scan.md").read()
  assert "Removal (Diff-Cleanse, loss_p)" in md
  # which of the two happened, in words: the triggered samples still one image, or diverse again
  assert m["outcome"] == ("collapsed" if m["asr_after"] >= c.scan.kappa_d else "removed")
  assert f"**{m['outcome'].capitalize()}**: {m['outcome_text']}" in md
  assert m["triggered_fid_before"] >= 0 and m["triggered_fid_after"] >= 0
  assert m["removal_png"] == "removal.png" and os.path.getsize(wd / "removal.png") > 100


def test_scan_refuses_bad_inputs(tmp_path):
  c = _tiny(tmp_path)
  c.scan.remove = True  # config.data: 16×16 digits, the model makes 8×8 images
  with pytest.raises(ConfigError, match=r"against config.data \(digits, 16×16×1 images\), but the model generates 8×8×1"):
    run_scan(c, str(tmp_path / "wd"))
  c = _tiny(tmp_path)
  c.scan.remove_loss = "loss_x"
  with pytest.raises(ConfigError, match=r"config\.scan\.remove_loss = 'loss_x': must be one of 'loss_p', 'loss_c', 'unlearn'"):
    run_scan(c, str(tmp_path / "wd"))
  c = _tiny(tmp_path)
  c.scan.model = str(tmp_path / "nowhere")
  with pytest.raises(ConfigError, match=r"config\.scan\.model = .*nowhere.*: must name an existing diffusion model"):
    run_scan(c, str(tmp_path / "wd"))
  c = _tiny(tmp_path)
  c.scan.encoder = "clip"
  with pytest.raises(ConfigError, match=r"config\.scan\.clip_weights is empty: it must name CLIP weights"):
    run_scan(c, str(tmp_path / "wd"))
  c = _tiny(tmp_path)
  c.scan.trojan_gammas = (1.0,)
  with pytest.raises(ConfigError, match=r"config\.scan\.trojan_gammas = \(1\.0,\): values are TrojDiff noise scales"):
    run_scan(c, str(tmp_path / "wd"))
  c = _tiny(tmp_path)
  c.scan.confirm_batch = 0  # restarts follow unconfirmed hits: none without the held-out check
  with pytest.raises(ConfigError, match=r"config\.scan\.restarts = 5: needs scan\.confirm_batch > 0"):
    run_scan(c, str(tmp_path / "wd"))
  c = _tiny(tmp_path)
  c.scan.patience = -1
  with pytest.raises(ConfigError, match=r"config\.scan\.patience = -1: must be an integer ≥ 0"):
    run_scan(c, str(tmp_path / "wd"))
  c = _tiny(tmp_path)
  c.scan.budget = 1  # fewer iterations than one run
  with pytest.raises(ConfigError, match=r"config\.scan\.budget = 1: must be 0 \(none\) or at least scan\.iterations"):
    run_scan(c, str(tmp_path / "wd"))
  c = _tiny(tmp_path)
  c.scan.encoder = "dino"
  with pytest.raises(ConfigError, match=r"config\.scan\.encoder = 'dino': must be one of 'classifier', 'pixels', 'clip'"):
    run_scan(c, str(tmp_path / "wd"))
  c = _tiny(tmp_path)
  c.scan.encoder_path = "assets:digits/cnn"  # 16×16 digits, the model makes 8×8 images
  with pytest.raises(ConfigError, match="classifies 16×16×1 images, but the model generates 8×8×1"):
    run_scan(c, str(tmp_path / "wd"))
  c = _tiny(tmp_path)
  c.scan.encoder_path = c.scan.model  # a U-Net where a classifier is needed
  with pytest.raises(ModelFileError, match="is a unet export, but a classifier is needed"):
    run_scan(c, str(tmp_path / "wd"))


def test_entropy_mode_judges_a_purifier_by_its_label_entropy(tmp_path, monkeypatch):
  import numpy as np
  c = _tiny(tmp_path)
  c.data.image_size = 8
  c.scan.update(mode="entropy", classifier=c.scan.encoder_path, entropy_trials=3, entropy_inputs=6, entropy_steps=2,
                entropy_threshold=5.0)  # above ln 10: any purifier is flagged
  wd = tmp_path / "wd"
  r = run_scan(c, str(wd))
  saved = json.load(open(wd / "scan.json"))
  assert saved == r and r["mode"] == "entropy" and r["backdoored"] is True
  assert r["mscr"] is None and r["elijah"] is None and r["trigger_png"] is None  # pinned keys, no BBTI ran
  assert len(r["entropy_raw"]) == 3 and all(0 <= e <= np.log(10) + 1e-9 for e in r["entropy_raw"])
  assert r["entropy"] == pytest.approx(np.mean(r["entropy_filtered"])) and r["threshold"] == 5.0
  assert os.path.getsize(wd / "evidence.png") > 100
  # a threshold nobody judged on held-out models: the verdict says so
  assert r["threshold_heldout"] is None and "No held-out TPR / FPR is measured" in open(wd / "scan.md").read()
  from jaxdiff.tasks import scan as scan_task
  held = dict(scan_task.ENTROPY_HELDOUT_DIGITS, threshold=5.0, tpr=0.8, fpr=0.2, models=10)
  monkeypatch.setattr(scan_task, "ENTROPY_HELDOUT_DIGITS", held)
  r = run_scan(c, str(wd))
  assert r["threshold_heldout"] == {"tpr": 0.8, "fpr": 0.2, "models": 10, "report": held["report"]}
  md = open(wd / "scan.md").read()
  assert "held-out digits models" in md and "TPR 80%, FPR 20%" in md and "does not separate" in md
  c.data.image_size = 16
  with pytest.raises(ConfigError, match="takes 8×8×1 images: set config.data to the model's data"):
    run_scan(c, str(wd))


@pytest.mark.slow  # the real digits DDPM, 300 reversals from t = T
def test_entropy_mode_passes_the_shipped_digits_ddpm(tmp_path):
  from configs import scan
  c = scan.get_config()
  c.scan.update(mode="entropy", entropy_trials=3, entropy_inputs=100)
  r = run_scan(c, str(tmp_path))
  assert r["backdoored"] is False and r["entropy"] > c.scan.entropy_threshold



def _kernel(params, name):
  for part in name.split("/"):
    params = params[part]
  return np.asarray(params["kernel"])


def test_residual_pruning_takes_a_channel_from_every_writer_of_a_stream():
  from configs import scan
  from jaxdiff.backdoor import pruning
  from jaxdiff.models import UNet, UNetConfig
  from jaxdiff.models.cnn import SimpleCNN
  from jaxdiff.models.unet import residual_streams
  from jaxdiff.tasks import defence
  cfg = UNetConfig.ddpm(image_size=8, in_channels=1, base_channels=8, channel_mults=(1, 2), attention_resolutions=(4,),
                        layers_per_block=2, norm_num_groups=4, dropout=0.0)
  model = UNet(cfg)
  params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), jnp.zeros((1,)))["params"]
  rng = np.random.default_rng(1)
  scores = tuple({g.name: rng.random(g.size) for g in pruning.channel_groups(params)} for _ in range(2))
  c = scan.get_config()
  c.scan.update(prune_groups="residual", finetune_steps=0)
  repaired, fraction, worst = defence.repair(c, model, params, {"schedule": "linear", "num_timesteps": 1000}, None,
                                             scores, method="diff_cleanse", ratio=0.25, loss="loss_p", workdir=None,
                                             fingerprint=None, desc="")
  assert 0 < fraction <= worst <= 0.25
  for stream in residual_streams(cfg):  # the same ⌊0.25·C⌋ channels zeroed in every writer of the stream
    cut = {tuple(np.flatnonzero(np.abs(k.reshape(-1, k.shape[-1])).max(0) == 0))
           for k in (_kernel(repaired, n) for n in stream)}
    assert len(cut) == 1 and len(next(iter(cut))) == _kernel(params, stream[0]).shape[-1] // 4, stream
  c.scan.prune_groups = "layer"
  assert defence.prune_streams(c.scan, SimpleCNN()) == ()
  c.scan.prune_groups = "residual"
  with pytest.raises(ConfigError, match="residual streams of the DDPM U-Net only, not of SimpleCNN"):
    defence.prune_streams(c.scan, SimpleCNN())


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_repair_data_come_from_the_configured_sampler(sampler):
  from configs import scan
  from jaxdiff import diffusion
  from jaxdiff.models import UNet, UNetConfig, eps_fn_of
  from jaxdiff.tasks import defence
  model = UNet(UNetConfig.ddpm(image_size=8, in_channels=1, base_channels=8, channel_mults=(1,),
                              attention_resolutions=(), layers_per_block=1, norm_num_groups=4, dropout=0.0))
  params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), jnp.zeros((1,)))["params"]
  c = scan.get_config()
  c.scan.update(synthetic_sampler=sampler, synthetic_steps=3, finetune_samples=5)
  d = {"schedule": "linear", "num_timesteps": 1000}
  got = defence.clean_images(c, model, params, d, (8, 8, 1), jax.random.key(7))
  want = diffusion.sample(eps_fn_of(model, params), diffusion.make_schedule("linear", 1000),
                          key=jax.random.fold_in(jax.random.key(7), 0), shape=(5, 8, 8, 1), sampler=sampler,
                          num_steps=3)
  np.testing.assert_allclose(got, np.clip((np.asarray(want) + 1) / 2, 0, 1), atol=1e-5)


def test_repair_with_finetune_ema_keeps_the_average_of_the_iterates(tmp_path):
  from configs import scan
  from jaxdiff.backdoor import pruning
  from jaxdiff.models import UNet, UNetConfig
  from jaxdiff.tasks import defence
  model = UNet(UNetConfig.ddpm(image_size=8, in_channels=1, base_channels=8, channel_mults=(1,),
                              attention_resolutions=(), layers_per_block=1, norm_num_groups=4, dropout=0.0))
  params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), jnp.zeros((1,)))["params"]
  rng = np.random.default_rng(1)
  scores = tuple({g.name: rng.random(g.size) for g in pruning.channel_groups(params)} for _ in range(2))
  images = rng.random((8, 8, 8, 1)).astype(np.float32)
  c = scan.get_config()
  c.train.log_every = 1

  def run(ema):
    c.scan.update(finetune_steps=1, finetune_batch=4, finetune_lr=1e-2, finetune_ema=ema)
    return defence.repair(c, model, params, {"schedule": "linear", "num_timesteps": 1000}, images, scores,
                          method="diff_cleanse", ratio=0.25, loss="loss_p", workdir=str(tmp_path / f"ema{ema}"),
                          fingerprint=f"ema{ema}", desc="")[0]

  last, averaged = run(0.0), run(0.5)  # 0: the last iterate
  mask, _ = pruning.prune(params, *scores, 0.25)
  # one step: the EMA's warm-up decay min(0.5, 1/10) = 0.1 weighs the start, 0.9 the iterate
  want = jax.tree.map(lambda p0, p1: 0.1 * p0 + 0.9 * p1, pruning.apply_mask(params, mask), last)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), averaged, want)
  assert not all(jax.tree.leaves(jax.tree.map(lambda a, b: np.allclose(a, b), last, pruning.apply_mask(params, mask))))
  c.scan.finetune_ema = 1.0
  from jaxdiff.tasks.config import validate
  with pytest.raises(ConfigError, match=r"config\.scan\.finetune_ema = 1\.0"):
    validate(c)


def test_unlearn_repair_without_a_trigger_is_refused_before_any_work(tmp_path):
  from configs import scan as scan_config
  from jaxdiff.tasks.defence import repair
  with pytest.raises(ValueError, match=r"the unlearn repair needs the inverted trigger: repair\(\.\.\., trigger=r\)"):
    repair(scan_config.get_config(), None, None, None, None, None, method="diff_cleanse", ratio=0.03,
           loss="unlearn", workdir=str(tmp_path), fingerprint="x", desc="x")
  assert not any(tmp_path.iterdir())


def test_terd_mode_writes_its_verdict_the_reversed_trigger_and_the_evidence(tmp_path):
  c = _tiny(tmp_path)
  c.scan.update(mode="terd", terd_iterations=3, terd_refine_iterations=2, terd_batch=2, terd_steps=2)
  wd = tmp_path / "wd"
  r = run_scan(c, str(wd))
  saved = json.load(open(wd / "scan.json"))
  assert saved == json.loads(json.dumps(r)) and saved["mode"] == "terd"
  t = saved["terd"]
  assert saved["backdoored"] == (t["kl_mean"] > c.scan.terd_kl_threshold)
  assert len(t["estimation_loss"]) == 3 and len(t["refinement_loss"]) == 2
  trigger = np.load(wd / "trigger.npy", allow_pickle=False)
  assert trigger.shape == (8, 8, 1)
  assert t["kl_mean"] == pytest.approx(float(np.mean(trigger.astype(np.float64) ** 2 / 2)), rel=1e-4)
  for f in ("trigger.png", "evidence.png", "scan.md"):
    assert os.path.getsize(wd / f) > 100, f
  assert "(TERD)" in open(wd / "scan.md").read()
