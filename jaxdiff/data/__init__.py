"""Datasets (pixel space [0, 1], NHWC float32, int32 labels) and the batching pipeline."""
from jaxdiff.data.pipeline import (batch_indices, data_sharding, eval_batches, host_batches, prefetch,
                                   steps_per_epoch, to_device)
from jaxdiff.data.sources import (CIFAR_BINARY, ArraySource, cifar_archive_source, dataset_title,
                                  digits_and_rings_source, digits_source, fashion_mnist_source, read_idx,
                                  make_source, prepare_dataset, ring_images, synthetic_source, tfds_source)
from jaxdiff.data.augment import random_crop_flip
