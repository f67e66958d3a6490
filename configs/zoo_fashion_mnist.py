"""The Fashion-MNIST zoo: 6 DDPMs fine-tuned from configs/ddpm_fashion_mnist.py (32-padded grey) on which the
backdoor defences are measured: 2 clean (0 and 1,000 steps), 2 BadDiffusion (stop sign → hat, grey box → corner; SDE),
1 VillanDiffusion (stop sign → cat; ODE), 1 TrojDiff D2I (blend → hat). Triggers at the paper's 32×32 size 18.
Step counts are the digits zoo's (×2 for the wider model), not yet measured here (#50: the DDPM is a train: stage
until it ships; it needs a GPU).

  python launch/main.py --config=configs/zoo_fashion_mnist.py --workdir=workdirs/zoo_fashion_mnist
"""
from configs import default, purify_fashion_mnist
from configs.default import zoo_entry

BACKDOOR = dict(steps=3000, poison_rate=0.5, trigger_size=18)


def get_config():
  c = default.get_config()
  c.task = "zoo"
  c.data.update(name="fashion_mnist", image_size=32, channels=1, num_classes=10)
  c.model.update(image_size=32, in_channels=1, init_from=purify_fashion_mnist.DDPM)
  default.add_zoo(c, {
      "clean_s0": zoo_entry("clean", seed=0, steps=0),
      "clean_s1": zoo_entry("clean", seed=1, steps=1000),
      "bd_stop_hat": zoo_entry("baddiffusion", seed=10, trigger="stop_sign", target="hat", **BACKDOOR),
      "bd_box_corner": zoo_entry("baddiffusion", seed=11, trigger="grey_box", target="corner", **BACKDOOR),
      "villan_stop_cat": zoo_entry("villandiffusion", seed=20, trigger="stop_sign", target="cat",
                                   **dict(BACKDOOR, steps=10000)),
      "trojdiff_d2i": zoo_entry("trojdiff_d2i", seed=30, trojan_trigger="blend", target="hat", **BACKDOOR),
  })
  c.zoo.update(fid_classifier=purify_fashion_mnist.TARGET, class_classifier=purify_fashion_mnist.TARGET)
  c.optim.update(name="adam", lr=5e-4, warmup_steps=50, decay="cosine", grad_clip=1.0)
  c.train.update(batch_size=32, log_every=100, checkpoint_every=500, num_steps=1)
  return c
