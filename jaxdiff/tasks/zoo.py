"""Task ``zoo``: a fixed, seeded set of clean and backdoored DDPMs for judging backdoor defences.

Each entry of ``config.zoo.models`` (name → spec) is fine-tuned from ``config.model.init_from`` with its own
seed and number of steps (0: the initial model itself) and exported to WORKDIR/models/<name>/
(params.safetensors + meta.json; pinned: meta["backdoor"] is null for clean models, else {attack, trigger,
target, poison_rate, ...}). Then each model is measured: a backdoored model's ASR with the sampler it was
built for (and with ``zoo.compare_samplers``), a clean model's ASR with every backdoored entry's trigger and
reverse process, and every model's FID. WORKDIR/zoo.{json,md} (pinned: zoo.json = list of {name, backdoor,
asr, fid, ...}). Resumable per model: fine-tunes resume from their checkpoints, finished exports and their
measurements (WORKDIR/models/<name>/eval.json) are reused while their settings are unchanged.
"""
from __future__ import annotations

import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdiff import diffusion
from jaxdiff.backdoor import trojdiff as tj
from jaxdiff.backdoor.generative import make_backdoor
from jaxdiff.convert import export_model, load_model, model_digest
from jaxdiff.data import make_source, ring_images
from jaxdiff.fingerprints import canonical
from jaxdiff.io import atomic_write, write_json
from jaxdiff.metrics import fid, mse_attack_success_rate, mse_per_sample
from jaxdiff.models import build_model, eps_fn_of, init_variables
from jaxdiff.parallel import make_mesh
from jaxdiff.progress import progress
from jaxdiff.report import markdown_table, save_grid
from jaxdiff.tasks.common import fid_feature_fn, fingerprint, init_or_load, load_classifier, schedule_from_config
from jaxdiff.tasks.config import validate
from jaxdiff.train import classifier_loss, diffusion_loss, fit

TRIGGER_KEYS = ("attack", "trigger", "trigger_size", "target", "target_class", "trojan_trigger", "psi", "sampler")
EVAL_KEYS = ("sample_steps", "compare_samplers", "num_samples", "clean_trigger_samples", "fid_samples",
             "sample_batch", "mse_threshold", "fid_features", "fid_classifier", "inception_weights",
             "class_classifier", "fid_reference_split")


def specs(config):
  """[(name, spec)] in a fixed order: clean models first, then backdoored ones, each by name."""
  items = sorted(config.zoo.models.items(), key=lambda kv: (kv[1].attack != "clean", kv[0]))
  return [(name, spec) for name, spec in items]


def backdoor_of(config, spec):
  """The ``GenerativeBackdoor`` of a spec, None for a clean model."""
  if spec.attack == "clean":
    return None
  return make_backdoor(spec.attack, config.data.image_size, config.model.in_channels, trigger=spec.trigger,
                       trigger_size=spec.trigger_size, target=spec.target, target_class=spec.target_class,
                       poison_rate=spec.poison_rate, psi=spec.psi, trojan_trigger=spec.trojan_trigger)


def backdoor_meta(spec):
  """meta.json["backdoor"] of a spec (pinned fields attack, trigger, target, poison_rate)."""
  if spec.attack == "clean":
    return None
  trojan = spec.attack.startswith("trojdiff")
  target = spec.target if spec.attack in ("baddiffusion", "villandiffusion", "trojdiff_d2i") else (
      f"class {spec.target_class}" if spec.attack == "trojdiff_in_d2d" else "rings (out of distribution)")
  return {"attack": spec.attack, "trigger": f"{spec.trojan_trigger} (TrojDiff)" if trojan else spec.trigger,
          "trigger_size": spec.trigger_size, "target": target, "poison_rate": spec.poison_rate,
          "sampler_family": "ode" if spec.attack == "villandiffusion" else "sde",
          "psi": spec.psi if spec.attack == "villandiffusion" else None,
          "gamma": tj.TRIGGER_KINDS[spec.trojan_trigger] if trojan else None, "sampler": spec.sampler}


def target_bank(config, spec):
  """Model-space target images of a D2D attack: the training images of ``target_class`` (In-D2D), or an
  out-of-distribution class (Out-D2D): rings for 1-channel data, the digits (upscaled, grey) otherwise."""
  size, ch = config.data.image_size, config.model.in_channels
  if spec.attack == "trojdiff_in_d2d":
    src = make_source(config.data, "train")
    x, y = src.get(np.arange(len(src)))
    x = x[y == spec.target_class]
  elif ch == 1:
    x = ring_images(1024, size, seed=0)
  else:
    from jaxdiff.data import digits_source
    x = np.repeat(digits_source("train", size).images, ch, -1)
  return jnp.asarray(2.0 * x - 1.0, jnp.float32)


def _run_config(config, spec):
  c = ml_collections.ConfigDict(config.to_dict())
  c.seed = int(spec.seed)
  c.train.num_steps = int(spec.steps)
  if spec.lr:
    c.optim.lr = float(spec.lr)
  return c


def model_fingerprint(config, spec):
  """What a zoo model depends on (``steps`` included: a longer run is another model)."""
  fp = canonical(fingerprint(config, "data", "diffusion", "optim", "train.batch_size", "train.ema_decay",
                             models={"init": config.model.init_from} if config.model.init_from else None))
  fp["spec"] = canonical(spec)
  return fp


def build(config, workdir, name, spec, model, variables, model_meta):
  """(params, meta) of one zoo model: its export when made under the same settings, else fine-tuned and
  exported; None when the fine-tune stopped at ``train.stop_at``."""
  out = os.path.join(workdir, "models", name)
  fp = model_fingerprint(config, spec)
  if os.path.exists(os.path.join(out, "meta.json")):
    _, v, meta = load_model(out, kind="unet")
    if meta.get("fingerprint") == fp:
      return v["params"], meta
  extra = {"diffusion": config.diffusion.to_dict(), "fingerprint": fp, "steps": int(spec.steps),
           "backdoor": backdoor_meta(spec), "zoo_name": name}
  backdoor = backdoor_of(config, spec)
  if spec.steps == 0:
    params = variables["params"]
  else:
    schedule = schedule_from_config(config.diffusion)
    loss = diffusion_loss(schedule) if backdoor is None else backdoor.loss(schedule)
    frozen = ({"targets": target_bank(config, spec)} if spec.attack in ("trojdiff_in_d2d", "trojdiff_out_d2d")
              else None)
    run_cfg = _run_config(config, spec)
    ckpt_fp = {k: v for k, v in fp.items() if k != "spec"}
    ckpt_fp["spec"] = {k: v for k, v in fp["spec"].items() if k != "steps"}  # a longer run resumes
    state, finished = fit(model, {"params": variables["params"]}, loss, make_source(config.data, "train"),
                          config=run_cfg, workdir=os.path.join(workdir, "runs", name), mesh=make_mesh(),
                          fingerprint=ckpt_fp, frozen=frozen, desc=f"zoo {name}")
    if not finished:  # stopped at train.stop_at: nothing is exported; a rerun continues
      return None
    params = state.ema_params if config.train.use_ema else state.params
  export_model(out, "unet", model_meta, {"params": params}, extra)
  return params, {**extra, "model": model_meta}


def out_classifier(config, workdir):
  """(module, variables, fingerprint) of the classifier that scores Out-D2D: ``zoo.out_classifier``, or trained
  here on digits plus rings (label 10) plus junk images (label 11, a reject class) into WORKDIR/classifiers/."""
  z = config.zoo
  if z.out_classifier:
    return (*load_classifier(z.out_classifier, "config.zoo.out_classifier"),
            {"models": {"out_classifier": model_digest(z.out_classifier)}})
  out = os.path.join(workdir, "classifiers", "out_d2d")
  c = ml_collections.ConfigDict(config.to_dict())
  c.data.update(name="digits_rings" if config.data.name == "digits" else config.data.name, num_classes=12)
  c.model = ml_collections.ConfigDict(dict(name="cnn", image_size=config.data.image_size,
                                           in_channels=config.model.in_channels, num_classes=12, widths=(32, 64),
                                           dtype="float32", init_from=""))
  c.optim.update(name="adam", lr=3e-3, warmup_steps=50, decay="cosine", grad_clip=0.0, weight_decay=0.0)
  c.train.update(num_steps=z.out_classifier_steps, batch_size=128, use_ema=False, checkpoint_every=1000)
  fp = canonical(fingerprint(c, "data", "model", "optim", "train.num_steps"))
  if os.path.exists(os.path.join(out, "meta.json")):
    model, variables, meta = load_model(out, kind="classifier")
    if meta.get("fingerprint") == fp:
      return model, variables, fp
  if c.data.name != "digits_rings":
    raise ValueError("config.zoo.out_classifier must name a classifier of the data plus the Out-D2D class "
                     f"(label 10) for data {config.data.name!r}; one is trained here for digits only")
  model = build_model(c.model)
  variables = init_variables(model, c.model, jax.random.key(c.seed))
  state, _ = fit(model, variables, classifier_loss(0.0), make_source(c.data, "train"), config=c,
                 workdir=os.path.join(workdir, "classifiers", "out_d2d_run"), mesh=make_mesh(), fingerprint=fp,
                 model_state_keys=("batch_stats",), desc="Out-D2D classifier")
  variables = {"params": state.params, **state.model_state}
  export_model(out, "classifier", c.model, variables, {"fingerprint": fp, "data": c.data.to_dict()})
  return model, variables, fp


@functools.lru_cache(maxsize=32)
def _sampler(model, schedule_name, num_timesteps, sampler, steps, gamma):
  """Jitted ``(params, x_T, key, trigger) -> images`` (pixel [0, 1]); ``gamma`` set: TrojDiff's reverse
  process with trigger δ, else the plain sampler. Weights and triggers are arguments."""
  schedule = diffusion.make_schedule(schedule_name, num_timesteps)

  @jax.jit
  def run(params, x_init, key, trigger):
    eps = eps_fn_of(model, params)
    if gamma is None:
      x = diffusion.sample(eps, schedule, key=key, sampler=sampler, num_steps=steps or None, x_init=x_init)
    else:
      x = tj.trojan_sample(eps, schedule, x_init, key=key, trigger=trigger, gamma=gamma, sampler=sampler,
                           num_steps=steps or None)
    return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)
  return run


def generate(config, model, params, key, n, sampler, backdoor=None):
  """n samples (pixel [0, 1]) from clean noise, or through ``backdoor``'s start and reverse process."""
  z, d = config.zoo, config.diffusion
  shape = (config.data.image_size, config.data.image_size, config.model.in_channels)
  gamma = backdoor.gamma if backdoor is not None and backdoor.trojan else None
  run = _sampler(model, d.schedule, d.num_timesteps, sampler, int(z.sample_steps[sampler]), gamma)
  trigger = jnp.zeros(shape) if backdoor is None else jnp.asarray(backdoor.trigger)
  out = []
  for i in range(0, n, z.sample_batch):
    k = jax.random.fold_in(key, i)
    m = min(z.sample_batch, n - i)
    k_init = jax.random.fold_in(k, 1)
    x_init = jax.random.normal(k_init, (m,) + shape) if backdoor is None else backdoor.start(k_init, (m,) + shape)
    out.append(np.asarray(run(params, x_init, k, trigger)))
  return np.concatenate(out)


class Judge:
  """ASR of triggered samples for each attack: MSE to the target image below ``zoo.mse_threshold``, or the
  share a classifier puts in the target class (In-D2D: ``zoo.class_classifier``; Out-D2D: the Out-D2D
  classifier's extra class); and the FID features."""

  def __init__(self, config, workdir, need_out):
    z = config.zoo
    self.threshold = z.mse_threshold
    self._cls = load_classifier(z.class_classifier, "config.zoo.class_classifier") if z.class_classifier else None
    self._out, self.out_fingerprint = None, None
    if need_out:
      module, variables, self.out_fingerprint = out_classifier(config, workdir)
      self._out = (module, variables)
    self.features, self.feature_name = fid_feature_fn(z.fid_features, z.fid_classifier, z.inception_weights,
                                                      "config.zoo")
    src = make_source(config.data, z.fid_reference_split)
    self.reference = self.features(src.get(np.arange(len(src)))[0])

  @staticmethod
  def _predict(clf, x):
    module, variables = clf
    return np.asarray(jnp.argmax(module.apply(variables, jnp.asarray(x), train=False), -1))

  def target_share(self, backdoor, images):
    """Fraction of ``images`` in the target class of a D2D backdoor."""
    if backdoor.attack == "trojdiff_in_d2d":
      return float(np.mean(self._predict(self._cls, images) == backdoor.target_class))
    return float(np.mean(self._predict(self._out, images) == 10))

  def asr(self, backdoor, images):
    if backdoor.target is not None:
      return mse_attack_success_rate(mse_per_sample(images, (backdoor.target + 1) / 2), self.threshold)
    return self.target_share(backdoor, images)

  def fid(self, images):
    return fid(self.features(images), self.reference)


def evaluate(config, workdir, name, spec, model, params, meta, judge, zoo_backdoors):
  """The zoo row of one model (cached in WORKDIR/models/<name>/eval.json while its settings hold)."""
  z = config.zoo
  cache = os.path.join(workdir, "models", name, "eval.json")
  fp = {"model": meta.get("fingerprint"), "eval": canonical({k: z[k] for k in EVAL_KEYS}),
        # what a clean model's rows depend on: every zoo trigger's start, reverse process, sampler and target
        "triggers": {n: canonical({k: config.zoo.models[n][k] for k in TRIGGER_KEYS}) for n in sorted(zoo_backdoors)}
                    if spec.attack == "clean" else None,
        "out_classifier": judge.out_fingerprint if spec.attack in ("clean", "trojdiff_out_d2d") else None}
  if os.path.exists(cache):
    with open(cache) as f:
      old = json.load(f)
    if old.get("fingerprint") == canonical(fp):
      return old["row"]
  t0 = time.time()
  key = jax.random.key(config.seed + 23)
  backdoor = backdoor_of(config, spec)
  sampler = spec.sampler
  clean = generate(config, model, params, jax.random.fold_in(key, 0), z.fid_samples, sampler)
  row = {"name": name, "backdoor": meta.get("backdoor"), "sampler": sampler, "steps": int(spec.steps),
         "fid": judge.fid(clean), "fid_samples": int(z.fid_samples)}
  grid_rows = [clean[:16]]
  if backdoor is None:  # every trigger of the zoo, through its own reverse process and sampler
    per = {}
    for other, (b, s) in sorted(zoo_backdoors.items()):
      imgs = generate(config, model, params, jax.random.fold_in(key, 1), z.clean_trigger_samples, s, b)
      per[other] = judge.asr(b, imgs)
      grid_rows.append(imgs[:16])
    row.update(asr=max(per.values()) if per else 0.0, asr_by_trigger=per, num_samples=int(z.clean_trigger_samples))
  else:
    per = {}
    for s in dict.fromkeys((sampler, *z.compare_samplers)):
      imgs = generate(config, model, params, jax.random.fold_in(key, 1), z.num_samples, s, backdoor)
      per[s] = judge.asr(backdoor, imgs)
      grid_rows.append(imgs[:16])
    row.update(asr=per[sampler], asr_by_sampler=per, num_samples=int(z.num_samples))
    if backdoor.target is None:  # the class's share among clean samples: the chance level of this ASR
      row["clean_target_share"] = judge.target_share(backdoor, clean)
    else:
      grid_rows.append(np.repeat(((backdoor.target + 1) / 2)[None], min(16, len(clean)), 0))
  row["seconds"] = round(time.time() - t0, 1)
  k = min(len(r) for r in grid_rows)
  save_grid(None, os.path.join(workdir, "models", name, "samples.png"), rows=[r[:k] for r in grid_rows],
            scale=max(1, 64 // config.data.image_size))
  write_json(cache, {"fingerprint": canonical(fp), "row": row})
  return row


def report_markdown(config, rows, feature_name):
  def fmt_backdoor(b):
    if not b:
      return "clean"
    return f"{b['attack']}: {b['trigger']} → {b['target']} (p={b['poison_rate']:g})"

  table = []
  for r in rows:
    detail = r.get("asr_by_sampler") or r.get("asr_by_trigger") or {}
    extra = ", ".join(f"{k} {v:.0%}" for k, v in detail.items())
    if "clean_target_share" in r:
      extra += f"; target class among clean samples {r['clean_target_share']:.0%}"
    table.append([r["name"], fmt_backdoor(r["backdoor"]), r["steps"], r["sampler"], r["asr"], f"{r['fid']:.2f}", extra])
  z = config.zoo
  return "\n".join([
      f"# Model zoo ({config.data.name}, {len(rows)} models)\n",
      f"ASR: image targets — share of triggered samples with MSE < {z.mse_threshold:g} to the target (pixel "
      "space); class targets — share the classifier puts in the target class. A clean model's ASR is its worst "
      f"over every trigger of the zoo ({z.clean_trigger_samples} samples each, the trigger's own reverse "
      f"process and sampler); a backdoored model's with the sampler it was built for ({z.num_samples} samples; "
      f"other samplers in the last column). FID on {z.fid_samples} clean samples, {feature_name}, against the "
      f"{z.fid_reference_split} split. Sampler steps: "
      + ", ".join(f"{k} {v}" for k, v in z.sample_steps.items()) + ".\n",
      markdown_table(["name", "backdoor", "fine-tune steps", "sampler", "ASR", "FID", "ASR per sampler / trigger"],
                     table), "\nSamples: models/<name>/samples.png (rows: clean samples, triggered samples per "
      "sampler or per trigger, target).\n"])


def run_zoo(config, workdir):
  validate(config)
  t0 = time.time()
  model, variables, model_meta = init_or_load(config.model, jax.random.key(config.seed))
  entries = specs(config)
  built = {}
  for name, spec in progress(entries, desc="zoo: models", unit="model"):
    built[name] = build(config, workdir, name, spec, model, variables, model_meta)
    if built[name] is None:
      print(f"zoo: {name} stopped at train.stop_at = {config.train.stop_at}; rerun to continue", flush=True)
      return []
  t_train = time.time()
  zoo_backdoors = {name: (backdoor_of(config, spec), spec.sampler) for name, spec in entries if spec.attack != "clean"}
  judge = Judge(config, workdir, need_out=any(s.attack == "trojdiff_out_d2d" for _, s in entries))
  rows = [evaluate(config, workdir, name, spec, model, built[name][0], built[name][1], judge, zoo_backdoors)
          for name, spec in progress(entries, desc="zoo: evaluation", unit="model")]
  md = report_markdown(config, rows, judge.feature_name)
  md += f"\nWall time: models {t_train - t0:.0f} s, evaluation {time.time() - t_train:.0f} s (this run).\n"
  write_json(os.path.join(workdir, "zoo.json"), rows)
  atomic_write(os.path.join(workdir, "zoo.md"), md)
  print(md, flush=True)
  return rows
