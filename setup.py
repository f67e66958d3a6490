from setuptools import find_packages, setup

setup(
    name="jaxdiff",
    version="0.1.0",
    description="Diffusion models as adversarial-robustness defences (DiffPure, denoised smoothing) and "
                "backdoor attacks on them (DIFF2, BadDiffusion), in JAX/Flax.",
    packages=find_packages(include=["jaxdiff", "jaxdiff.*"]),
    package_data={"jaxdiff": ["assets/*/*", "assets/*/*/*", "assets/*/*/*/*"]},
    python_requires=">=3.10",
    install_requires=[
        "jax>=0.7", "flax>=0.10", "optax>=0.2.4", "orbax-checkpoint>=0.11", "tensorflow-datasets>=4.9.7",
        "chex>=0.1.88", "ml_collections>=1.0", "numpy", "scipy", "scikit-learn", "safetensors",
        "absl-py", "pillow", "matplotlib", "tqdm", "dm-pix",
        "huggingface_hub",  # hf: model references (the hub's own client); url: uses the standard library
    ],
    extras_require={
        # accelerators: the jax build with the device runtime (NVIDIA GPUs: CUDA 12 wheels; Cloud TPU VMs)
        "cuda": ["jax[cuda12]"],
        "tpu": ["jax[tpu]"],
        # the API reference (scripts/docs.sh)
        "docs": ["sphinx"],
        # torch pinned to the CPU build available offline; diffusers/safetensors for parity tests.
        # pytest < 9.2: pytest-xdist 3.8's --dist loadgroup (scripts/test.sh) stops grouping on 9.2 (pytest-xdist#1386)
        "test": ["pytest<9.2", "pytest-xdist", "import-linter", "torch==2.13.0", "diffusers", "nbclient", "nbformat",
                 "ipykernel", "scikit-image",
                 # pytorch-fid's InceptionV3 for the FID parity test (torchvision pinned to the torch release)
                 "torchvision==0.28.0", "pytorch-fid",
                 # the CLIP image tower parity test (Diff-Cleanse's encoder)
                 "transformers",
                 # the OpenAI improved/guided-diffusion UNetModel for the ADM parity test
                 "guided-diffusion-sdk",
                 # timm's VisionTransformer for the ViT-B/16 parity test (Carlini et al.'s classifier)
                 "timm"],
    },
)
