"""SEEM / Mask2Former ``transformer_encoder_fpn`` pixel decoder (``TransformerEncoderPixelDecoder``).

A 6-layer post-norm DETR transformer encoder on ``input_proj(res5)`` followed by a top-down FPN with
GroupNorm, producing the stride-4 ``mask_features`` and three multi-scale maps (strides 32, 16, 8)
for the SEEM decoder. Attribute names follow the official code so that the checkpoint's
``sem_seg_head.pixel_decoder.*`` keys load with ``strict=True``.

All feature maps are kept in ``torch.channels_last`` memory format: oneDNN's conv and the CPU
GroupNorm kernel are fastest that way and the tokens for the transformer are then a free reshape.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .layers import MultiheadAttention
from .position_encoding import absolute_sine_embedding, sine_position_embedding
from .winograd import conv3x3_winograd, winograd_weight

__all__ = ["TransformerEncoderPixelDecoder", "ConvNormAct", "TransformerEncoderLayer"]

_CL = torch.channels_last
# Where Winograd pays (measured, 2 threads): 512 channels 1.9x faster at 128x128 and 64x64, 256
# channels 1.5x; 96 channels (default_tiny) 2x *slower*, its transforms outweigh the saved flops.
# Small maps stay direct too: their gain does not pay for keeping the transformed filters (4x the
# weight's memory) around.
WINOGRAD_MIN_CHANNELS = 256
WINOGRAD_MIN_PIXELS = 64 * 64


class ConvNormAct(nn.Conv2d):
    """detectron2-style ``Conv2d``: conv, then optional ``norm``, then optional activation.

    Keys: ``weight``, ``bias`` (only when ``bias=True``), ``norm.weight``, ``norm.bias``.
    ``forward(x: [B, Cin, H, W]) -> [B, Cout, H', W']``.

    A 3x3 convolution in CPU fp32 inference with at least ``WINOGRAD_MIN_CHANNELS`` inputs, on a
    map of at least ``WINOGRAD_MIN_PIXELS``, runs by Winograd's algorithm (:mod:`.winograd`): the
    same outputs to fp32 rounding, ~1.9x faster at 512 channels. Its transformed
    filters are cached and recomputed whenever the weight changes (loading, fine-tuning).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        padding: int = 0,
        bias: bool = True,
        norm: Optional[nn.Module] = None,
        activation: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    ) -> None:
        # ``activation`` may be in-place (e.g. ``F.relu_``): it is applied to a freshly made tensor.
        super().__init__(in_channels, out_channels, kernel_size, stride=1, padding=padding, bias=bias)
        self.norm = norm
        self.activation = activation
        self._winograd: Optional[Tuple[Tuple[int, int], torch.Tensor]] = None  # (weight key, filters)

    def _uses_winograd(self, x: torch.Tensor) -> bool:
        return (
            self.kernel_size == (3, 3) and self.padding == (1, 1) and self.groups == 1
            and self.in_channels >= WINOGRAD_MIN_CHANNELS
            and x.device.type == "cpu" and x.dtype == torch.float32
            and not (torch.is_grad_enabled() and self.weight.requires_grad)
            and x.shape[-2] * x.shape[-1] >= WINOGRAD_MIN_PIXELS
        )

    def _winograd_filters(self) -> torch.Tensor:
        # The version counter moves on every in-place change (load_state_dict, optimiser steps).
        key = (self.weight.data_ptr(), self.weight._version)
        if self._winograd is None or self._winograd[0] != key:
            self._winograd = (key, winograd_weight(self.weight))
        return self._winograd[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._uses_winograd(x):
            x = conv3x3_winograd(x, self._winograd_filters(), self.bias)
        else:
            x = super().forward(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


class TransformerEncoderLayer(nn.Module):
    """Post-norm DETR encoder layer (dropout 0, ReLU FFN).

    ``forward(src: [B, L, C], pos: [1 or B, L, C]) -> [B, L, C]``::

        src = norm1(src + self_attn(q=k=src+pos, v=src))
        src = norm2(src + linear2(relu(linear1(src))))
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        qk = (src + pos).transpose(0, 1)  # the attention module is sequence-first
        attended = self.self_attn(qk, qk, src.transpose(0, 1)).transpose(0, 1)
        src = self.norm1(src + attended)
        return self.norm2(src + self.linear2(F.relu(self.linear1(src))))


class TransformerEncoder(nn.Module):
    """Stack of encoder layers (no final norm: the official pre_norm is False)."""

    def __init__(self, num_layers: int, d_model: int, nhead: int, dim_feedforward: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(d_model, nhead, dim_feedforward) for _ in range(num_layers)
        )

    def forward(self, src: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            src = layer(src, pos)
        return src


class TransformerEncoderOnly(nn.Module):
    """Wrapper giving the ``transformer.encoder.layers.{i}`` key path.

    ``forward(x: [B, C, H, W], pos: [1, C, H, W]) -> [B, C, H, W]`` (channels-last memory).
    """

    def __init__(self, d_model: int, nhead: int, num_encoder_layers: int, dim_feedforward: int) -> None:
        super().__init__()
        self.encoder = TransformerEncoder(num_encoder_layers, d_model, nhead, dim_feedforward)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        # Batch-first tokens in row-major (y, x) order; free when x is channels-last.
        src = x.permute(0, 2, 3, 1).reshape(b, h * w, c)
        pos_t = pos.permute(0, 2, 3, 1).reshape(pos.shape[0], h * w, c)
        out = self.encoder(src, pos_t)
        return out.reshape(b, h, w, c).permute(0, 3, 1, 2)


class TransformerEncoderPixelDecoder(nn.Module):
    """SEEM's pixel decoder (Mask2Former ``transformer_encoder_fpn``, GroupNorm FPN).

    ``forward(features)`` with ``features = {"res2": [B, C2, H/4, W/4], ..., "res5": [B, C5, H/32, W/32]}``
    returns ``(mask_features [B, mask_dim, H/4, W/4], transformer_encoder_features [B, conv_dim, H/32, W/32],
    multi_scale_features [[B, conv_dim, H/32, W/32], [.., H/16, W/16], [.., H/8, W/8]])``.
    ``transformer_encoder_features`` is the encoder output *before* ``layer_4``; ``multi_scale_features[0]``
    is ``layer_4`` of it. Outputs are in ``torch.channels_last`` memory format.
    """

    def __init__(
        self,
        in_channels: Sequence[int] = (96, 192, 384, 768),
        conv_dim: int = 512,
        mask_dim: int = 512,
        num_encoder_layers: int = 6,
        nheads: int = 8,
        dim_feedforward: int = 2048,
        num_groups: int = 32,
        absolute_position: bool = False,
    ) -> None:
        super().__init__()
        # Ours (off in the official configs): the encoder's positions in input pixels rather than
        # normalised by the map size, so crops and whole images are encoded alike; position_offset
        # is the image's top-left corner in input pixels (training places crops with it).
        self.absolute_position = absolute_position
        self.position_offset: tuple[float, float] = (0.0, 0.0)
        in_channels = [int(c) for c in in_channels]
        if len(in_channels) != 4:
            raise ValueError("expected the channels of res2..res5")
        self.in_features = ["res2", "res3", "res4", "res5"]
        self.conv_dim = conv_dim
        self.mask_dim = mask_dim
        self.num_feature_levels = 3  # multi-scale maps handed to the SEEM decoder

        # Module creation order reproduces the official state-dict order (adapters/layers first,
        # then mask_features, input_proj, transformer, and the re-created layer_4 last).
        for idx, cin in enumerate(in_channels[:-1], start=1):
            self.add_module(f"adapter_{idx}", self._gn_conv(cin, conv_dim, 1, num_groups, relu=False))
            self.add_module(f"layer_{idx}", self._gn_conv(conv_dim, conv_dim, 3, num_groups, relu=True))
        self.mask_features = ConvNormAct(conv_dim, mask_dim, kernel_size=3, padding=1, bias=True)
        self.input_proj = ConvNormAct(in_channels[-1], conv_dim, kernel_size=1, bias=True)
        self.transformer = TransformerEncoderOnly(conv_dim, nheads, num_encoder_layers, dim_feedforward)
        self.layer_4 = self._gn_conv(conv_dim, conv_dim, 3, num_groups, relu=True)

    @staticmethod
    def _gn_conv(cin: int, cout: int, k: int, groups: int, relu: bool) -> ConvNormAct:
        """``k x k`` conv without bias (GroupNorm follows), GroupNorm, optional ReLU."""
        return ConvNormAct(
            cin, cout, kernel_size=k, padding=k // 2, bias=False,
            norm=nn.GroupNorm(groups, cout), activation=F.relu_ if relu else None,
        )

    def _encode(self, res5: torch.Tensor) -> torch.Tensor:
        """``res5 [B, C5, h, w] -> [B, conv_dim, h, w]``: input_proj + transformer encoder."""
        t = self.input_proj(res5)
        _, _, h, w = t.shape
        if self.absolute_position:
            stride = 32.0  # res5
            pos = absolute_sine_embedding(h, w, stride, self.conv_dim // 2, self.position_offset,
                                          device=t.device, dtype=t.dtype)
        else:
            # The sine embedding depends only on the shape (no padding mask is used).
            pos = sine_position_embedding(h, w, self.conv_dim // 2, device=t.device, dtype=t.dtype)
        return self.transformer(t, pos)

    def forward(
        self, features: Dict[str, torch.Tensor]
    ) -> Tuple[torch.Tensor, torch.Tensor, List[torch.Tensor]]:
        feats = {k: features[k].contiguous(memory_format=_CL) for k in self.in_features}
        encoder_out = self._encode(feats["res5"])
        y = self.layer_4(encoder_out)
        multi_scale = [y]
        # Top-down: res4 (k=3), res3 (k=2), res2 (k=1).
        for k in (3, 2, 1):
            lateral = getattr(self, f"adapter_{k}")(feats[f"res{k + 1}"])
            # FPN convention: nearest upsampling to the lateral's size. In-place add: `lateral` is a
            # fresh GroupNorm output, so this saves one full-size allocation at stride 4.
            y = lateral.add_(F.interpolate(y, size=lateral.shape[-2:], mode="nearest"))
            y = getattr(self, f"layer_{k}")(y)
            if len(multi_scale) < self.num_feature_levels:
                multi_scale.append(y)
        return self.mask_features(y), encoder_out, multi_scale
