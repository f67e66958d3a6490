"""What the defence tasks share (scan, defend_zoo, diff2's detection): BBTI and Elijah runs on one model, Elijah's
leave-one-out forest, and the pruning-based
removal with its repair fine-tune, all driven by a ``config.scan`` block. Model space [−1, 1] for triggers and
weights; pixel [0, 1] for samples, encoders and FID features."""
from __future__ import annotations

import functools
import itertools
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdiff import diffusion
from jaxdiff.backdoor import anp, inversion, pruning
from jaxdiff.backdoor import terd as terd_lib
from jaxdiff.backdoor import trojdiff as tj
from jaxdiff.convert import load_clip_vision, load_model, resolve_path
from jaxdiff.data import ArraySource, host_batches, make_source
from jaxdiff.errors import ConfigError
from jaxdiff.models import eps_apply, eps_fn_of, penultimate_features
from jaxdiff.models.clip import CLIPVision, clip_preprocess
from jaxdiff.models.unet import UNet, residual_streams
from jaxdiff.parallel import make_mesh
from jaxdiff.progress import progress
from jaxdiff.train import fit


class Encoder(NamedTuple):
  """``fn(params, x pixel [N, H, W, C]) -> embeddings [N, D]`` with its weights ``params`` (a jit argument)."""
  fn: Callable
  params: Any
  name: str

  def __call__(self, x):
    return self.fn(self.params, x)


CONSTANT_STD = 0.01  # pixel [0, 1]; an image of std s has cosine 1/√(1 + (s/CONSTANT_STD)²) with a constant one


def _pixels(params, x):
  """[N, D + 1]: each image minus its mean, then one coordinate CONSTANT_STD·√D (the centred norm of an image of
  pixel std CONSTANT_STD). Cosine similarity is the Pearson correlation up to O((0.01/std)²) for images that
  vary; constant images (all black, all white: Pearson undefined) have cosine 1 with each other, so MSCR counts
  a cluster of them, and ≈ 0.01/std with any image that varies."""
  flat = x.reshape(x.shape[0], -1)
  floor = jnp.full((x.shape[0], 1), CONSTANT_STD * np.sqrt(flat.shape[1]), flat.dtype)
  return jnp.concatenate([flat - jnp.mean(flat, axis=1, keepdims=True), floor], axis=1)


def encoder(s, shape):
  """The ``Encoder`` of ``s.encoder`` (``s`` a scan block) for images of ``shape``: "pixels" — each image minus
  its mean (cosine similarity = the images' Pearson correlation; constant images one cluster: ``_pixels``);
  "classifier" — the penultimate features of the classifier export ``s.encoder_path``; "clip" — CLIP's image embedding (weights file ``s.clip_weights``,
  Diff-Cleanse's choice, ViT-B/32), images resized to its input size."""
  if s.encoder == "pixels":
    return Encoder(_pixels, None, "pixels (mean-centred; Pearson correlation, constant images alike)")
  if s.encoder == "clip":
    cfg, params = load_clip_vision(resolve_path(s.clip_weights))
    module = CLIPVision(cfg)
    fn = lambda p, x: module.apply({"params": p}, clip_preprocess(x, cfg.image_size))
    return Encoder(fn, jax.tree.map(jnp.asarray, params),
                   f"CLIP image tower ({cfg.width} wide, {cfg.layers} layers, patch {cfg.patch_size}) of {s.clip_weights}")
  module, variables, meta = load_model(s.encoder_path, kind="classifier", what="config.scan.encoder_path")
  m = meta["model"]
  if (m.get("image_size"), m.get("in_channels")) != (shape[0], shape[2]):
    raise ConfigError(f"config.scan.encoder_path = {s.encoder_path!r} classifies {m.get('image_size')}×"
                      f"{m.get('image_size')}×{m.get('in_channels')} images, but the model generates "
                      f"{shape[0]}×{shape[1]}×{shape[2]}: pass a classifier of the model's data")
  return Encoder(lambda v, x: penultimate_features(module, v, x), variables, f"penultimate features of {s.encoder_path}")


@functools.lru_cache(maxsize=8)
def sample_fn(model, schedule_name, num_timesteps, sampler, steps, gamma=0.0):
  """``(params, ε, r, key) -> samples`` (pixel [0, 1]) of the backdoor sampling with trigger r (model space) from
  clean noise ε, remat per step so BBTI can differentiate the chain: ``gamma`` 0 — ``sampler`` from x_T = ε + r
  (BadDiffusion / VillanDiffusion; r = 0: clean sampling); γ > 0 — TrojDiff's from x_T = γε + r through its
  reverse process with μ = (1 − γ)δ = r (``trojdiff.trojan_sample``: ε' = γ ε_θ, step noise × γ), the
  backdoor sampling Diff-Cleanse runs on TrojDiff models (its Eq. 14)."""
  schedule = diffusion.make_schedule(schedule_name, num_timesteps)

  def fn(params, noise, r, key):
    eps = eps_fn_of(model, params)
    if gamma:
      x = tj.trojan_sample(eps, schedule, gamma * noise + r, key=key, trigger=r / (1.0 - gamma), gamma=gamma,
                           sampler=sampler, num_steps=steps, remat=True)
    else:
      x = diffusion.sample(eps, schedule, key=key, sampler=sampler, num_steps=steps, x_init=noise + r, remat=True)
    return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)
  return fn


@functools.lru_cache(maxsize=16)
def jitted_sample_fn(model, schedule_name, num_timesteps, sampler, steps, gamma=0.0):
  """``sample_fn`` jitted once per architecture and sampler settings (the weights are its argument)."""
  return jax.jit(sample_fn(model, schedule_name, num_timesteps, sampler, steps, gamma))


def bbti_mode(sampler, gamma=0.0):
  """(name, sampler, γ) of one backdoor sampling: from ε + r (γ 0; name: the sampler) or TrojDiff's at γ
  (name "ddim+trojdiff0.6")."""
  gamma = float(gamma)
  return (f"{sampler}+trojdiff{gamma:g}" if gamma else sampler, sampler, gamma)


def bbti_modes(s):
  """The backdoor samplings BBTI tries for scan block ``s``: each of ``s.samplers`` from ε + r, then each sampler
  again with TrojDiff's sampling at each γ of ``s.trojan_gammas`` (``bbti_mode``)."""
  return [bbti_mode(sp) for sp in s.samplers] + [bbti_mode(sp, g) for g in s.trojan_gammas for sp in s.samplers]


def bbti(s, model, params, d, shape, encode, key, sampler, use_entropy=None, gamma=0.0):
  """``inversion.bbti_invert`` with the settings of scan block ``s`` for ``sampler`` (``gamma``: ``sample_fn``);
  ``d``: the diffusion dict."""
  fn = sample_fn(model, d["schedule"], d["num_timesteps"], sampler, int(s.num_steps), float(gamma))
  bar = progress(total=s.iterations, desc=f"BBTI ({sampler}{f' TrojDiff γ {gamma:g}' if gamma else ''})", unit="it")
  out = inversion.bbti_invert(params, shape, key, sample_fn=fn, encode_fn=encode.fn, encoder_params=encode.params,
                              iterations=s.iterations,
                              batch=s.batch, lr=s.lr, kappa=s.kappa, kappa_d=s.kappa_d, kappa_plus=s.kappa_plus,
                              kappa_minus=s.kappa_minus, use_entropy=s.use_entropy if use_entropy is None else use_entropy,
                              init=s.trigger_init, race_iterations=int(s.race_iterations),
                              confirm_batch=int(s.confirm_batch), min_entropy=s.min_entropy,
                              restarts=int(s.restarts), patience=int(s.patience), budget=int(s.budget),
                              callback=lambda h: _advance(bar, h, s.iterations, int(s.budget)))
  bar.close()
  return out


def _advance(bar, entry, iterations, budget):
  """One BBTI iteration on the progress bar; a restart (``attempt`` > 0) sets its total to one more run from here
  (the run before may have given up early: ``scan.patience``), cut at ``budget``."""
  if entry["attempt"] and entry["iteration"] == 0:
    bar.total = bar.n + (min(iterations, budget - bar.n) if budget else iterations)
    bar.refresh()
  bar.update(1)


def restarts_text(s):
  """The report's phrase for scan block ``s``'s restarts, patience and budget ("" without restarts)."""
  if not s.restarts:
    return ""
  return (f"; a run with only unconfirmed hits starts again from a new key (noise batch and start), up to "
          f"{s.restarts} more time{'s' if s.restarts > 1 else ''}"
          + (f", giving up after {s.patience} unconfirmed hits while a restart remains" if s.patience else "")
          + (f", {s.budget} iterations at most in all" if s.budget else ""))


def verdict_rank(out):
  """How a sampler's BBTI result ranks for the scan's verdict: a confirmed hit before any unconfirmed MSCR (with
  ``scan.confirm_batch`` a clean sampler can end at a higher MSCR on its own batch than a confirmed one), then MSCR."""
  return (bool(out["backdoored"]), out["mscr"])


def trigger_cluster_share(s, model, params, d, shape, encode, trigger, key, sampler, gamma=0.0, return_samples=False):
  """The inverted trigger's effect: the MSCR of ``s.batch`` backdoor samples with r (the share in one cluster;
  from ε + r, or TrojDiff's from γε + r with ``gamma``: ``sample_fn``); with ``return_samples`` also the samples
  (pixel [0, 1], [s.batch, H, W, C])."""
  fn = jitted_sample_fn(model, d["schedule"], d["num_timesteps"], sampler, int(s.num_steps), float(gamma))
  x = fn(params, jax.random.normal(key, (s.batch,) + shape), trigger, key)
  share = collapse_share(s, encode, x)
  return (share, np.asarray(x)) if return_samples else share


def collapse_share(s, encode, samples):
  """The share of ``samples`` (pixel [0, 1]) in their largest cluster of pairwise cosine > ``s.kappa`` in the
  scan's encoder space (Diff-Cleanse's MSCR, Eq. 5): near 1 when a trigger turns every noise into one image."""
  return inversion.mscr(jax.jit(encode.fn)(encode.params, jnp.asarray(samples)), s.kappa)


REPAIR_OUTCOMES = ("removed", "target", "collapsed")
ASR_REMOVED = 0.1  # a repair leaving less than this share of triggered samples on the target counts as not "target"


def repair_outcome(collapse, kappa_d, asr=None):
  """What a repair did to the trigger, in words: ``(code, sentence)``, code one of ``REPAIR_OUTCOMES``.
  ``asr`` (the real target's ASR after the repair; None when the target is unknown, as in a scan) ≥ ``ASR_REMOVED``:
  "target" (the backdoor's target still comes out). Else ``collapse`` (the share of triggered samples in one
  cluster, ``collapse_share``) ≥ ``kappa_d``: "collapsed" — the trigger still takes over generation, the samples
  one image that is not (or no longer measured as) the target, which the papers' ASR counts as removed. Else
  "removed": triggered samples are diverse again."""
  if asr is not None and asr >= ASR_REMOVED:
    return "target", f"the backdoor's target still comes out ({asr:.0%} of triggered samples)"
  if collapse >= kappa_d:
    what = "not the target" if asr is not None else "the trigger still takes over generation"
    return "collapsed", (f"{collapse:.0%} of triggered samples still collapse into one image ({what}): the trigger "
                         "still takes over generation, so the backdoor is not removed even where the ASR says so"
                         if asr is not None else
                         f"{collapse:.0%} of backdoor samples with r still collapse into one image: {what}; "
                         "the backdoor's effect is not removed")
  return "removed", (f"triggered samples are diverse again ({collapse:.0%} in one cluster, below κ_d = {kappa_d:g})")


def terd(s, model, params, d, shape, key):
  """``terd.terd_invert`` with the settings of scan block ``s`` (``terd_*``) on one model; ``d`` the diffusion dict.
  Returns its dict plus ``backdoored`` (mean KL > ``s.terd_kl_threshold``) and ``seconds``."""
  start = time.time()
  sample = sample_fn(model, d["schedule"], d["num_timesteps"], s.terd_sampler, int(s.terd_steps))
  bar = progress(total=s.terd_iterations + s.terd_refine_iterations, desc="TERD (estimation, refinement)", unit="it")
  done = {"estimation": 0, "refinement": 0}

  def advance(stage, n, total):
    bar.update(n - done[stage])
    done[stage] = n
  out = terd_lib.terd_invert(params, shape, key, eps_fn=_eps_params(model),
                             schedule=diffusion.make_schedule(d["schedule"], d["num_timesteps"]), sample_fn=sample,
                             iterations=s.terd_iterations, refine_iterations=s.terd_refine_iterations,
                             batch=s.terd_batch, lr=s.terd_lr, weight_decay=s.terd_weight_decay,
                             clip_norm=s.terd_clip_norm, form=s.terd_form, gamma=s.terd_gamma, callback=advance)
  bar.close()
  return {**out, "backdoored": bool(out["kl_mean"] > s.terd_kl_threshold), "seconds": round(time.time() - start, 1)}


def elijah(s, model, params, d, shape, key, sampler):
  """(τ [H, W, C], scores {uniformity, total_variation, loss, sampler}, samples from ε + τ) of Elijah."""
  tau, losses = inversion.elijah_invert(params, shape, jax.random.fold_in(key, 0), eps_fn=_eps_params(model),
                                        t_last=d["num_timesteps"] - 1, iterations=s.elijah_iterations,
                                        batch=s.batch, lam=s.elijah_lambda)
  fn = jitted_sample_fn(model, d["schedule"], d["num_timesteps"], sampler, int(s.num_steps))
  samples = np.asarray(fn(params, jax.random.normal(jax.random.fold_in(key, 1), (s.batch,) + shape), tau, key))
  return tau, {**inversion.elijah_scores(samples), "loss": float(losses[-1]), "sampler": sampler}, samples


def elijah_forest(detection, seed=0):
  """Elijah's verdicts, leave-one-out: a random forest (scikit-learn, 100 trees) on (uniformity, total variation)
  trained on every other model's features and truth predicts each model; None where the others hold only one
  class (nothing to learn)."""
  from sklearn.ensemble import RandomForestClassifier
  feats = np.array([[r["elijah"]["uniformity"], r["elijah"]["total_variation"]] for r in detection])
  truth = np.array([r["backdoored_truth"] for r in detection])
  out = []
  for i in range(len(detection)):
    others = np.arange(len(detection)) != i
    if len(set(truth[others])) < 2:
      out.append(None)
      continue
    forest = RandomForestClassifier(n_estimators=100, random_state=seed).fit(feats[others], truth[others])
    out.append(bool(forest.predict(feats[i:i + 1])[0]))
  return out


def synthesize(model, params, d, shape, n, key, steps, sampler="ddpm", batch=128):
  """n clean samples (pixel [0, 1]) of the model: ``sampler`` with ``steps`` steps from fresh noise."""
  run = _sample_clean(model, d["schedule"], d["num_timesteps"], tuple(shape), sampler, int(steps))
  return np.concatenate([np.asarray(run(params, jax.random.fold_in(key, i), min(batch, n - i)))
                         for i in range(0, n, batch)])


@functools.lru_cache(maxsize=8)
def _sample_clean(model, schedule_name, num_timesteps, shape, sampler, steps):
  schedule = diffusion.make_schedule(schedule_name, num_timesteps)

  def run(params, key, n):
    x = diffusion.sample(eps_fn_of(model, params), schedule, key=key, shape=(n,) + shape, sampler=sampler,
                         num_steps=steps)
    return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)
  return jax.jit(run, static_argnums=2)


def clean_images(config, model, params, d, shape, key):
  """Fine-tuning data of the repair, pixel [0, 1]: ``scan.finetune_samples`` images the model itself generates
  (``scan.synthetic_sampler`` with ``scan.synthetic_steps`` steps; Diff-Cleanse's default) or, with
  ``scan.finetune_data = "real"``, the training split of ``config.data``. The repair learns these images'
  distribution: a few-step DDIM's samples (FID 3.0 on the digits zoo vs 1.5 for 100-step DDPM) doubled the
  repaired models' FID, so the default is the ancestral sampler."""
  s = config.scan
  if s.finetune_data == "real":
    src = make_source(config.data, "train")
    return src.get(np.arange(min(len(src), s.finetune_samples)))[0]
  return synthesize(model, params, d, shape, s.finetune_samples, key, s.synthetic_steps, s.synthetic_sampler)


def taylor_scores(config, model, params, d, images, trigger, key, gamma=0.0):
  """({layer: I^c}, {layer: I^b}) on ``scan.taylor_batch`` of ``images`` (pixel) with t ≥ ⌊0.95 T⌋ (𝒯 = 950 of
  1000, scaled to the schedule) and the trigger r (model space) in the form of its sampling (``gamma``:
  ``pruning.triggered_input``)."""
  s = config.scan
  schedule = diffusion.make_schedule(d["schedule"], d["num_timesteps"])
  t_from = int(round(s.taylor_threshold * d["num_timesteps"]))
  x0 = jnp.asarray(2.0 * images[:s.taylor_batch] - 1.0)
  return pruning.importance_scores(_eps_params(model), params, schedule, x0, key, trigger, t_from, gamma=gamma)


@functools.lru_cache(maxsize=8)
def _eps_params(model):
  """``(params, x, t) -> ε`` of ``model`` (the ε half of a learned-σ output), one function object per
  architecture (a static jit argument)."""
  apply = eps_apply(model)
  return lambda p, x, t: apply({"params": p}, x, t)


def anp_sweep(block, model, params, schedule, data, seed, key, desc):
  """Yields (lr, pruned params, pruned fraction) for each rate of ``block.anp_lrs``: ANP masks (``backdoor/anp.py``)
  fitted on ``block.anp_iterations`` clean training batches of ``block.anp_batch`` (``data`` a data block; the
  same batches and ``key`` for every rate), channels below ``block.anp_threshold`` pruned. ``block`` holds
  ``anp_settings`` (``config.defense`` or ``config.baddiffusion``)."""
  src = make_source(data, "train")
  batches = [2.0 * x["image"] - 1.0 for _, x in itertools.islice(host_batches(src, block.anp_batch, seed=seed),
                                                                  block.anp_iterations)]
  for lr in block.anp_lrs:
    bar = progress(total=len(batches), desc=f"{desc} ANP lr {lr:g}")
    masks = anp.anp_masks(_eps_params(model), params, schedule, batches, key, eps=block.anp_eps, steps=block.anp_steps,
                          alpha=block.anp_alpha, lr=float(lr), callback=lambda i, _: bar.update(1))
    bar.close()
    pruned_params, pruned = anp.anp_prune(params, masks, block.anp_threshold)
    yield float(lr), pruned_params, pruning.pruned_fraction(pruned)[0]


def prune_streams(s, model):
  """The coupled channel groups of ``s.prune_groups``: () per layer, or the U-Net's residual streams."""
  if s.prune_groups == "layer":
    return ()
  if not isinstance(model, UNet):
    raise ConfigError(f"config.scan.prune_groups = 'residual' knows the residual streams of the DDPM U-Net only, "
                      f"not of {type(model).__name__}: set --config.scan.prune_groups=layer")
  return residual_streams(model.cfg)


def repair(config, model, params, d, images, scores, *, method, ratio, loss, workdir, fingerprint, desc, tau=None,
           trigger=None, gamma=0.0):
  """(repaired params, pruned fraction, largest per-layer fraction): prune ``ratio`` of each layer's channels by
  ``method`` ("diff_cleanse" | "diff_pruning"; per layer or per residual stream, ``scan.prune_groups``) and
  fine-tune ``scan.finetune_steps`` steps on ``images`` (pixel) with ``loss`` (``pruning.REPAIR_LOSSES``: loss_p,
  loss_c, or unlearn with the inverted ``trigger`` [H, W, C], model space, in the form of its sampling: ``gamma``
  0 from ε + r, > 0 TrojDiff's from γε + r, ``pruning.repair_loss``), keeping the
  last iterate or, with ``scan.finetune_ema`` > 0, the EMA of the iterates;
  ``method = "elijah"``: no pruning, Elijah's fine-tune with its inverted trigger ``tau``; ``"finetune"``: no
  pruning, the fine-tune with ``loss`` alone (the control: what pruning adds).
  Resumable: the fine-tune checkpoints in ``workdir`` carry ``fingerprint``."""
  if method != "elijah" and loss == "unlearn" and trigger is None:  # before any pruning or fine-tuning
    raise ValueError("the unlearn repair needs the inverted trigger: repair(..., trigger=r)")
  s = config.scan
  schedule = diffusion.make_schedule(d["schedule"], d["num_timesteps"])
  if method == "elijah":
    mask, fraction, worst = jax.tree.map(jnp.ones_like, params), 0.0, 0.0
    loss_fn, frozen = pruning.elijah_repair_loss(schedule), {"teacher": params, "tau": jnp.asarray(tau, jnp.float32)}
  else:
    if method == "finetune":
      mask, fraction, worst = jax.tree.map(jnp.ones_like, params), 0.0, 0.0
    else:
      mask, pruned = pruning.prune(params, *scores, ratio, method, streams=prune_streams(s, model))
      fraction, worst = pruning.pruned_fraction(pruned)
    loss_fn, frozen = pruning.repair_loss(schedule, loss, float(gamma)), {"mask": mask, "teacher": params}
    if loss == "unlearn":
      frozen["trigger"] = jnp.asarray(trigger, jnp.float32)
      fingerprint = {"run": fingerprint, "unlearn_target": pruning.UNLEARN_TARGET}
    if gamma:  # the scores (the pruned mask) and unlearn's target read r as TrojDiff's μ
      fingerprint = {"run": fingerprint, "trojan_gamma": float(gamma),
                     "trojan_unlearn": pruning.TROJAN_UNLEARN if loss == "unlearn" else None}
  if s.finetune_steps == 0:
    return pruning.apply_mask(params, mask), fraction, worst
  c = ml_collections.ConfigDict(config.to_dict())
  c.train.update(num_steps=int(s.finetune_steps), batch_size=int(s.finetune_batch), use_ema=False,
                 ema_decay=float(s.finetune_ema) or c.train.ema_decay, checkpoint_every=max(100, int(s.finetune_steps)),
                 stop_at=0)
  c.optim.update(name="adam", lr=float(s.finetune_lr), warmup_steps=0, decay="constant", grad_clip=1.0,
                 weight_decay=0.0)
  source = ArraySource(np.asarray(images, np.float32), np.zeros(len(images), np.int32), 1)
  state, _ = fit(model, {"params": params}, loss_fn, source, config=c, workdir=workdir, mesh=make_mesh(),
                 fingerprint=fingerprint, frozen=frozen, desc=desc, apply_fn=eps_apply(model))
  return pruning.apply_mask(state.ema_params if s.finetune_ema else state.params, mask), fraction, worst
