"""The DIFF2 surrogate on Fashion-MNIST: a different network from the target (configs/classifier_fashion_mnist.py),
the 4-conv CNN (32/64 channels, 0.07M parameters) on the same 32-padded images, Adam 3e-3 cosine, crop + flip,
5 epochs of batch 128.

  python launch/main.py --config=configs/classifier_fashion_mnist_cnn.py --workdir=workdirs/cnn_fashion_mnist
"""
from configs import classifier_fashion_mnist, default

EPOCHS = 5


def get_config():
  c = classifier_fashion_mnist.get_config()
  c.model = default.ml_collections.ConfigDict(dict(
      name="cnn", image_size=32, in_channels=1, num_classes=10, widths=(32, 64), dtype="float32", init_from=""))
  c.optim.update(name="adam", lr=3e-3, momentum=0.9, weight_decay=0.0, warmup_steps=100, decay="cosine")
  c.train.update(num_steps=EPOCHS * 60_000 // 128, eval_every=60_000 // 128)
  return c
