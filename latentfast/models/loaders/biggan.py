"""pytorch-pretrained-BigGAN checkpoints (``config.json`` + ``pytorch_model.bin``) -> BigGANGenerator."""
from __future__ import annotations

from typing import Union

from ..biggan import BigGANConfig, BigGANGenerator
from ._common import _fill


def load_biggan(state_dict: dict, config: Union[BigGANConfig, dict], source: str = "checkpoint",
                **kwargs) -> BigGANGenerator:
    """Build a :class:`BigGANGenerator` from a pytorch-pretrained-BigGAN state dict and config."""
    cfg = config if isinstance(config, BigGANConfig) else BigGANConfig(**config)
    G = BigGANGenerator(cfg, **kwargs)
    _fill(G, {k: v for k, v in state_dict.items() if k != "class_vector"} | {"class_vector": G.class_vector},
          source)
    G.source_format = "biggan"
    return G.eval()


