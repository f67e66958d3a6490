"""A small CNN on digits (16×16): the target/surrogate classifier of the CPU experiments."""
from configs import default


def get_config():
  c = default.get_config()
  c.task = "train_classifier"
  c.data.update(name="digits", image_size=16)
  c.model = default.ml_collections.ConfigDict(dict(
      name="cnn", image_size=16, in_channels=1, num_classes=10, widths=(32, 64), dtype="float32",
      init_from=""))
  c.optim.update(name="adam", lr=3e-3, warmup_steps=50, decay="cosine", grad_clip=0.0)
  c.train.update(num_steps=600, batch_size=128, ema_decay=0.99, log_every=100, checkpoint_every=200,
                 eval_every=200)
  return c
