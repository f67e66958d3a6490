"""jaxdiff: diffusion models as adversarial-robustness defences, and attacks on them, in JAX."""
__version__ = "0.1.0"
