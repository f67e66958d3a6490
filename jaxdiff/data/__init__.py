"""Datasets (pixel space [0, 1], NHWC float32, int32 labels) and the batching pipeline."""
from jaxdiff.data.pipeline import (batch_indices, data_sharding, eval_batches, host_batches, prefetch,
                                   steps_per_epoch, to_device)
from jaxdiff.data.sources import (ArraySource, cifar_archive_source, digits_and_rings_source, digits_source,
                                  make_source, ring_images, synthetic_source, tfds_source)
