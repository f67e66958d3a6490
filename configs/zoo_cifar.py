"""The CIFAR-10 zoo for a GPU, with the papers' hyper-parameters (BadDiffusion / VillanDiffusion: fine-tune
google/ddpm-cifar10-32 50 epochs, batch 128, Adam 2e-4, poison rate 0.1, triggers 14 at 32×32; TrojDiff:
γ 0.6 blend (Hello Kitty in the paper; here the procedural cat) / 0.1 patch, In-D2D class 7 "horse",
Out-D2D digits): 4 clean, 3 BadDiffusion, 2 VillanDiffusion (ODE), 3 TrojDiff. 1,024 triggered samples per
backdoored model, 10K clean samples for the FID (Inception-v3 pool3). Fetches CIFAR-10, google/ddpm-cifar10-32
and the FID's Inception weights, trains the ResNet-18 that scores In-D2D (configs/classifier_cifar.py) as a stage;
put on disk: --config.zoo.out_classifier=DIR, a classifier of CIFAR-10 + digits as label 10 (+ any reject classes
above; Out-D2D hits are its label-10 votes).
"""
from configs import default
from configs.default import zoo_entry

EPOCHS_50 = 50 * 50_000 // 128
BACKDOOR = dict(steps=EPOCHS_50, poison_rate=0.1, trigger_size=14)


def get_config():
  c = default.get_config()
  c.task = "zoo"
  default.cifar_data(c)
  c.model.update(init_from=default.DDPM_CIFAR10)
  default.add_zoo(c, {
      "clean_s0": zoo_entry("clean", seed=0, steps=0),
      "clean_s1": zoo_entry("clean", seed=1, steps=EPOCHS_50 // 10),
      "clean_s2": zoo_entry("clean", seed=2, steps=EPOCHS_50 // 2),
      "clean_s3": zoo_entry("clean", seed=3, steps=EPOCHS_50),
      "bd_stop_hat": zoo_entry("baddiffusion", seed=10, trigger="stop_sign", target="hat", **BACKDOOR),
      "bd_box_corner": zoo_entry("baddiffusion", seed=11, trigger="grey_box", target="corner", **BACKDOOR),
      "bd_stop_shoe": zoo_entry("baddiffusion", seed=12, trigger="stop_sign", target="shoe", **BACKDOOR),
      "villan_stop_cat": zoo_entry("villandiffusion", seed=20, trigger="stop_sign", target="cat", **BACKDOOR),
      "villan_box_hat": zoo_entry("villandiffusion", seed=21, trigger="grey_box", target="hat", **BACKDOOR),
      "trojdiff_d2i": zoo_entry("trojdiff_d2i", seed=30, trojan_trigger="blend", target="shoe", **BACKDOOR),
      "trojdiff_in_d2d": zoo_entry("trojdiff_in_d2d", seed=31, trojan_trigger="blend", target_class=7, **BACKDOOR),
      "trojdiff_out_d2d": zoo_entry("trojdiff_out_d2d", seed=32, trojan_trigger="patch", **BACKDOOR),
  })
  c.zoo.update(sample_steps={"ddpm": 1000, "ddim": 50, "dpm_solver++": 20, "sde": 1000, "ode": 50},
               num_samples=1024, clean_trigger_samples=256, fid_samples=10_000, sample_batch=1000,
               fid_features="inception", inception_weights=default.INCEPTION_FID, mse_threshold=1e-3,
               class_classifier=default.CIFAR_SURROGATE)
  c.optim.update(name="adam", lr=2e-4, warmup_steps=500, decay="cosine", grad_clip=1.0)
  c.train.update(batch_size=128, log_every=100, checkpoint_every=2000, num_steps=1)
  return c
