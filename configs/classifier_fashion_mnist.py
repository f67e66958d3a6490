"""The Fashion-MNIST DIFF2 target: ResNet-18 at a quarter of its width (16–128 channels, 0.70M parameters) on the
28×28 grey images zero-padded to 32 (the size the DDPM of configs/ddpm_fashion_mnist.py works at, so purified images
go to it as they are); SGD 0.1 (Nesterov 0.9), weight decay 5e-4, cosine, random crop (4-pixel padding) +
horizontal flip, 10 epochs of batch 128 (~2.2 steps/s on 2 CPU cores: 35 min alone). Shipped as
jaxdiff/assets/fashion_mnist/resnet18_quarter: 93.39 % test accuracy (2026-12-05, 1.0 h on 2 shared cores). The full-width ResNet-18 (11.2M,
--config.model.width=1.0) is 3× slower per step on CPU. The surrogate, a different network:
configs/classifier_fashion_mnist_cnn.py.

  python launch/main.py --config=configs/classifier_fashion_mnist.py --workdir=workdirs/resnet18_fashion_mnist
"""
from configs import default

EPOCHS = 10


def get_config():
  c = default.get_config()
  c.task = "train_classifier"
  c.data.update(name="fashion_mnist", image_size=32, channels=1, num_classes=10)
  c.model = default.ml_collections.ConfigDict(dict(
      name="resnet18", image_size=32, in_channels=1, num_classes=10, width=0.25, dtype="float32", init_from=""))
  c.optim.update(name="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, warmup_steps=0, decay="cosine", grad_clip=0.0)
  c.train.update(num_steps=EPOCHS * 60_000 // 128, batch_size=128, augment="crop_flip", log_every=100,
                 checkpoint_every=1000, eval_every=60_000 // 128 * 5)
  return c
