"""A tiny SEEM configuration for fast behaviour tests (same code, small sizes)."""

from napari_seem.model.config import BackboneConfig, DecoderConfig, PixelDecoderConfig, SeemConfig, TextConfig


def tiny_config(mode: str = "v1") -> SeemConfig:
    return SeemConfig(
        backbone=BackboneConfig(embed_dim=16, depths=(1, 1, 1, 1), focal_levels=(2, 2, 2, 2)),
        pixel_decoder=PixelDecoderConfig(conv_dim=32, mask_dim=32, encoder_layers=1, nheads=4,
                                         dim_feedforward=64, norm_groups=8),
        text=TextConfig(width=32, layers=1, heads=4),
        decoder=DecoderConfig(hidden_dim=32, dim_proj=32, num_queries=11, nheads=4, dim_feedforward=64,
                              num_layers=3, spatial_memories=8),
        mode=mode,
    )
