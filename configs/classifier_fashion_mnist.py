"""A Fashion-MNIST classifier: ResNet-18 (11.2M parameters) on the 28×28 grey images zero-padded to 32 (the size the
DDPM of configs/ddpm_fashion_mnist.py works at, so that purified images go to it as they are), SGD 0.1 (Nesterov 0.9), weight decay
5e-4, cosine, random crop (4-pixel padding) + horizontal flip, 30 epochs of batch 128. The DIFF2 target;
``--config.model.name=cnn`` gives a different network for the surrogate. Not yet trained to a shipped asset (#50).

  python launch/main.py --config=configs/classifier_fashion_mnist.py --workdir=workdirs/resnet18_fashion_mnist
"""
from configs import default

EPOCHS = 30


def get_config():
  c = default.get_config()
  c.task = "train_classifier"
  c.data.update(name="fashion_mnist", image_size=32, channels=1, num_classes=10)
  c.model = default.ml_collections.ConfigDict(dict(
      name="resnet18", image_size=32, in_channels=1, num_classes=10, dtype="float32", init_from=""))
  c.optim.update(name="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, warmup_steps=0, decay="cosine", grad_clip=0.0)
  c.train.update(num_steps=EPOCHS * 60_000 // 128, batch_size=128, augment="crop_flip", log_every=100,
                 checkpoint_every=1000, eval_every=60_000 // 128 * 5)
  return c
