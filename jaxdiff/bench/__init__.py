"""Benchmark suites (``launch/bench.py`` is the entry point): timing and FLOPs helpers, the U-Net suite and
the certification suite."""
from jaxdiff.bench.certify import CLASSIFIERS, bench_certify_models
from jaxdiff.bench.timing import flops_of, peak_tflops, throughput_record, time_fn
from jaxdiff.bench.unet import bench_unet, unet_config
