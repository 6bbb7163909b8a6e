"""One encoder for any observation layout (``worldmodels.envs.observations``): one image array, one
vector array, or a dict of image and vector keys.

    one image (obs)     the image encoder itself, on the tensor (the pixel agents as they always were)
    one vector (obs)    the vector reader itself (``worldmodels.nets.vector``)
    a dict              ``KeyedEncoder``: the image keys stacked along channels into one image encoder
                        (as a frame stack is: they must share one square size), the vector keys
                        concatenated in key order into one vector reader, and the two outputs side
                        by side, image features first: [image features, vector features]

Reading each kind with its own network and concatenating the features is what DreamerV3 does with its
``cnn_keys`` / ``mlp_keys`` (Hafner et al. 2023, "Mastering Diverse Domains through World Models",
arXiv:2301.04104). The vector reader decides how much the vector is transformed before it meets the image
features: a Dense layer for the value-based learner, nothing for the actor-critics, whose trunks then
leave the vector columns alone (``worldmodels.nets.drq_encoder.make_trunk``).

Every encoder built here answers ``encode_with_map(obs) -> (features, conv feature map or None)``: the
training-health ND score reads the map, and there is none without images.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from worldmodels.envs.observations import ObsKey, is_dict
from worldmodels.errors import ConfigError


def image_input(layout: tuple[ObsKey, ...]) -> tuple[int, int]:
    """(channels, side) of the image keys stacked along channels: the image encoder's input. The conv
    encoders take one square side, so the keys must share it; refused in one sentence otherwise."""
    images = [key for key in layout if key.kind == "image"]
    sizes = {tuple(key.shape[1:]) for key in images}
    if len(sizes) != 1 or len(set(next(iter(sizes)))) != 1:
        described = "; ".join(key.describe() for key in images)
        raise ConfigError(f"the image keys ({described}) are read by one CNN as one stack of channels, which needs "
                          "them square and of one size; resize them with the environment's image size.")
    return sum(key.shape[0] for key in images), images[0].shape[1]


def vector_width(layout: tuple[ObsKey, ...]) -> int:
    """Width of the vector keys concatenated."""
    return sum(key.shape[0] for key in layout if key.kind == "vector")


def stack_images(layout: tuple[ObsKey, ...], obs: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
    """The image keys of a dict observation along channels, in key order: (..., sum k*C, H, W); an
    observation that is one image, as it is."""
    if not isinstance(obs, dict):
        return obs
    images = [obs[key.name] for key in layout if key.kind == "image"]
    return images[0] if len(images) == 1 else torch.cat(images, -3)


def concat_vectors(layout: tuple[ObsKey, ...], obs: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
    """The vector keys of a dict observation side by side, in key order: (..., sum k*D); an observation
    that is one vector, as it is."""
    if not isinstance(obs, dict):
        return obs
    vectors = [obs[key.name] for key in layout if key.kind == "vector"]
    return vectors[0] if len(vectors) == 1 else torch.cat(vectors, -1)


class KeyedEncoder(nn.Module):
    """A dict observation's encoder: ``image`` reads the stacked image keys, ``vector`` the concatenated
    vector keys (either None when the layout has no key of its kind); features [image, vector].

    ``out_dim``: the features' width; ``vector_dim``: how many of the last columns ``vector`` gave;
    ``feature_shape``: the image encoder's conv map per sample (None without images)."""

    def __init__(self, layout: tuple[ObsKey, ...], image: nn.Module | None, vector: nn.Module | None):
        super().__init__()
        self.layout = layout
        self.image, self.vector = image, vector
        self.vector_dim = vector.out_dim if vector is not None else 0
        self.out_dim = (image.out_dim if image is not None else 0) + self.vector_dim
        self.feature_shape = image.feature_shape if image is not None else None

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.encode_with_map(obs)[0]

    def encode_with_map(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        parts, feature_map = [], None
        if self.image is not None:
            image_features, feature_map = self.image.encode_with_map(stack_images(self.layout, obs))
            parts.append(image_features)
        if self.vector is not None:
            parts.append(self.vector(concat_vectors(self.layout, obs)))
        return (parts[0] if len(parts) == 1 else torch.cat(parts, -1)), feature_map


def layout_encoder(layout: tuple[ObsKey, ...], image: Callable[[int, int], nn.Module],
                   vector: Callable[[int], nn.Module]) -> nn.Module:
    """The encoder of ``layout``. ``image(channels, side)`` builds the image encoder, ``vector(width)``
    the vector reader; each is built only when the layout has keys of its kind, the image encoder
    first (the order their weights draw from torch's random generator)."""
    if not is_dict(layout):
        return image(*image_input(layout)) if layout[0].kind == "image" else vector(layout[0].shape[0])
    has_images = any(key.kind == "image" for key in layout)
    image_encoder = image(*image_input(layout)) if has_images else None
    vector_reader = vector(vector_width(layout)) if vector_width(layout) else None
    return KeyedEncoder(layout, image_encoder, vector_reader)


def vector_columns(encoder: nn.Module) -> int:
    """How many of the last columns of ``encoder``'s output come from vector keys (0 for an image encoder)."""
    return getattr(encoder, "vector_dim", 0)
