import os

# Tests run on CPU; the multi-device tests ask for 4 host devices (must be set before jax starts).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
