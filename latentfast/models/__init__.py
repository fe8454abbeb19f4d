"""Generators latentfast can interpret, and safe loaders for their checkpoints.

* :class:`Generator` — the interface (``z_dim``, ``sample_z``, ``f``, ``synthesize``, ``num_ws``, ``mlp_spec``);
  :func:`as_generator` wraps any nn.Module or callable.
* :class:`StyleGAN2Generator` — StyleGAN2 in plain torch ops; :class:`StyleGAN3Generator` — StyleGAN3-T/-R;
  :class:`BigGANGenerator` — BigGAN-deep.
* :func:`load_generator` — rosinality ``.pt``, NVIDIA ``.pkl`` (restricted unpickler, no code runs),
  pytorch-pretrained-BigGAN directories.
"""
from ._safe_pickle import UnsafePickleError
from .adapters import CallableGenerator, Generator, as_generator
from .biggan import BigGANConfig, BigGANGenerator
from .loaders import MappingOnlyGenerator, load_biggan, load_generator, load_nvidia_pickle, load_rosinality
from .stylegan2 import MappingNetwork, StyleGAN2Generator, SynthesisNetwork
from .stylegan3 import StyleGAN3Generator

__all__ = [
    "Generator", "CallableGenerator", "as_generator",
    "StyleGAN2Generator", "MappingNetwork", "SynthesisNetwork", "StyleGAN3Generator",
    "BigGANConfig", "BigGANGenerator",
    "load_generator", "load_rosinality", "load_nvidia_pickle", "load_biggan", "MappingOnlyGenerator",
    "UnsafePickleError",
]
