"""SEEM configurations as plain dataclasses, with the four official presets.

The official code reads YAML into nested dicts; here each part of the model has a small dataclass
and a preset is just a function returning a filled :class:`SeemConfig`. Every size is a field, so
tiny models (for training an embedded default) are built by the same code.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

InferenceMode = Literal["v1", "v0", "demo"]


@dataclass(frozen=True)
class BackboneConfig:
    """FocalNet. ``variant`` is ``"focal_dw"`` (Focal-T in SEEM) or ``"focal"`` (Focal-L)."""

    variant: Literal["focal_dw", "focal"] = "focal_dw"
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    focal_levels: tuple[int, ...] = (3, 3, 3, 3)
    focal_windows: tuple[int, ...] = (3, 3, 3, 3)
    mlp_ratio: float = 4.0

    @property
    def out_channels(self) -> tuple[int, ...]:
        return tuple(self.embed_dim * 2**i for i in range(len(self.depths)))


@dataclass(frozen=True)
class PixelDecoderConfig:
    """Transformer-encoder FPN (Mask2Former's ``transformer_encoder_fpn``)."""

    conv_dim: int = 512
    mask_dim: int = 512
    encoder_layers: int = 6
    nheads: int = 8
    dim_feedforward: int = 2048
    norm_groups: int = 32
    absolute_position: bool = False  # ours, not official: encoder positions in input pixels (crop training)


@dataclass(frozen=True)
class TextConfig:
    """CLIP-style causal text transformer."""

    vocab_size: int = 49408
    context_length: int = 77
    width: int = 512
    layers: int = 12
    heads: int = 8


@dataclass(frozen=True)
class DecoderConfig:
    """SEEM decoder. ``num_layers`` is the number of transformer layers (the official DEC_LAYERS - 1)."""

    hidden_dim: int = 512
    dim_proj: int = 512
    num_queries: int = 101
    nheads: int = 8
    dim_feedforward: int = 2048
    num_layers: int = 9
    num_feature_levels: int = 3
    spatial_memories: int = 32
    max_spatial_len: tuple[int, ...] = (512, 512, 512, 512)
    queries_per_prompt: int = 3  # v1 only: spatial queries drawn per prompt object
    num_classes_train: int = 133  # size of the training criterion's class weight (a checkpoint buffer)
    # Ours, not official (default off): add an absolute-pixel sine embedding to the mask features and
    # the decoder's level maps, so prompt points and masks carry where they are, and use it for the
    # cross-attention keys (see SeemDecoder.prepare_memory).
    absolute_position: bool = False
    # Ours, not official (default off): a spatial query's mask embedding gets the prompt's own
    # embedding (its mean mask feature, normalised) times a learned scale, so its mask starts from
    # "pixels like the prompted ones, near them" (see SeemDecoder._prompt_bias).
    prompt_similarity: bool = False


@dataclass(frozen=True)
class SeemConfig:
    """A whole SEEM model: architecture plus the inference logic (``mode``) run on it.

    ``mode`` selects the decoder's behaviour for visual prompts: ``"v1"`` (multi-object, sampled spatial
    queries, split memories), ``"v0"`` (one prompt per image, all object queries copied), or ``"demo"``
    (prompts as tokens in the object queries' self-attention, as the official Gradio app runs).
    The state-dict keys do not depend on ``mode``.
    """

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    pixel_decoder: PixelDecoderConfig = field(default_factory=PixelDecoderConfig)
    text: TextConfig = field(default_factory=TextConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    mode: InferenceMode = "v1"
    size_divisibility: int = 32
    pixel_mean: tuple[float, float, float] = (123.675, 116.280, 103.530)
    pixel_std: tuple[float, float, float] = (58.395, 57.120, 57.375)

    def with_mode(self, mode: InferenceMode) -> "SeemConfig":
        return replace(self, mode=mode)


_FOCAL_L = BackboneConfig(variant="focal", embed_dim=192, depths=(2, 2, 18, 2), focal_levels=(4, 4, 4, 4))


def _preset(backbone: BackboneConfig, mode: InferenceMode) -> SeemConfig:
    return SeemConfig(backbone=backbone, mode=mode)


# Our own small model, trained by ``napari_seem.training`` (not an official SEEM size). Budget: fp32
# weights <= 25 MB *including* the 49408-row text token table (49408 x 48 floats = 9.5 MB, the
# largest single tensor), a 512x512 encode <= 150 ms and a click <= 30 ms on a 2-core CPU.
DEFAULT_TINY = SeemConfig(
    backbone=BackboneConfig(embed_dim=32, depths=(1, 1, 3, 1), focal_levels=(2, 2, 2, 2)),
    pixel_decoder=PixelDecoderConfig(conv_dim=96, mask_dim=96, encoder_layers=1, nheads=4, dim_feedforward=256,
                                     norm_groups=8, absolute_position=True),
    text=TextConfig(width=48, layers=2, heads=4),
    decoder=DecoderConfig(hidden_dim=96, dim_proj=96, num_queries=101, nheads=4, dim_feedforward=384, num_layers=6,
                          num_classes_train=2, absolute_position=True),
    mode="v1",
)


# SEEM's code at toy sizes: random-weight trials of the UI and fast behaviour tests.
TINY = SeemConfig(
    backbone=BackboneConfig(embed_dim=16, depths=(1, 1, 1, 1), focal_levels=(2, 2, 2, 2)),
    pixel_decoder=PixelDecoderConfig(conv_dim=32, mask_dim=32, encoder_layers=1, nheads=4, dim_feedforward=64,
                                     norm_groups=8),
    text=TextConfig(width=32, layers=1, heads=4),
    decoder=DecoderConfig(hidden_dim=32, dim_proj=32, num_queries=11, nheads=4, dim_feedforward=64, num_layers=3,
                          spatial_memories=8),
)


PRESETS: dict[str, SeemConfig] = {
    "focalt_v1": _preset(BackboneConfig(), "v1"),
    "focall_v1": _preset(_FOCAL_L, "v1"),
    "focalt_v0": _preset(BackboneConfig(), "v0"),
    "focall_v0": _preset(_FOCAL_L, "v0"),
    # The official Gradio app: the demo decoder logic run on the v0 checkpoints.
    "focalt_demo": _preset(BackboneConfig(), "demo"),
    "focall_demo": _preset(_FOCAL_L, "demo"),
    "default_tiny": DEFAULT_TINY,
    "tiny": TINY,
}


def get_config(variant: str | SeemConfig) -> SeemConfig:
    """Return the preset named ``variant`` (e.g. ``"focalt_v1"``), or ``variant`` itself if it is a config."""
    if isinstance(variant, SeemConfig):
        return variant
    try:
        return PRESETS[variant]
    except KeyError:
        raise ValueError(f"unknown SEEM variant {variant!r}; known: {', '.join(sorted(PRESETS))}") from None
