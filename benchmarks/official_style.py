"""Official-style reference paths for the speed benchmarks, run on *our* modules and weights.

They reproduce how the official SEEM code computes, so that a benchmark can time it in the same
process as ours (ratios then hold on a noisy machine), and check it against the parity fixtures:

* :func:`official_encode`: the official FocalNet (``focal_dw``) op order, with its NCHW
  ``permute(...).contiguous()`` copies around every depthwise conv, layer-scale ``gamma`` applied as a
  separate multiply and the modulation computed in NCHW; then the pixel decoder on NCHW maps with
  detectron2's conv -> norm -> (out-of-place) ReLU and an out-of-place FPN add.
* :func:`official_decode`: one prompt round as the official decoder runs it: the key/value
  projections of the image features are recomputed at every call, all 101 object queries are
  decoded with the prompt's queries, and every layer computes full-resolution masks (and class
  embeddings) from which the next attention mask is resized.

Where the official layout is unknown or costs nothing the official-style path gets the cheaper
choice (the mask features are made contiguous once per image, outside the timed decode), so the
ratios it gives are, if anything, too small.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from napari_seem.model import ImageFeatures, SeemModel
from napari_seem.model.decoder import DecoderMemory, DecoderOutput, by_pixel
from napari_seem.model.pixel_decoder import ConvNormAct, TransformerEncoderPixelDecoder
from napari_seem.model.position_encoding import sine_position_embedding


@dataclass
class OfficialEncoding:
    """Backbone and pixel-decoder outputs of :func:`official_encode` (NCHW maps, as ours).

    ``mask_features_by_pixel``: ``[B, H/4 * W/4, C]`` contiguous, made once per image: the shared
    decoder code computes mask logits as ``features_by_pixel @ mask_emb^T`` (the official einsum
    contracts the same sums over channels)."""

    backbone: dict[str, torch.Tensor]
    mask_features: torch.Tensor
    encoder_features: torch.Tensor
    multi_scale: list[torch.Tensor]
    mask_features_by_pixel: torch.Tensor
    image_size: tuple[int, int]
    padded_size: tuple[int, int]


# ------------------------------------------------------------------------------------ backbone
def _nchw_residual_dw(conv: nn.Conv2d, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``tokens [B, L, C]`` -> ``tokens + dwconv(tokens)`` through contiguous NCHW and back."""
    batch, length, channels = tokens.shape
    x = tokens.view(batch, height, width, channels).permute(0, 3, 1, 2).contiguous()
    x = x + conv(x)
    return x.permute(0, 2, 3, 1).contiguous().view(batch, length, channels)


def _modulation(mod, x: torch.Tensor) -> torch.Tensor:
    """Focal modulation of ``x [B, H, W, C]`` computed in NCHW; returns ``[B, H, W, C]``."""
    channels, levels = x.shape[-1], mod.focal_level
    y = mod.f(x).permute(0, 3, 1, 2).contiguous()
    q, ctx, gates = torch.split(y, (channels, channels, levels + 1), 1)
    ctx_all = 0
    for level in range(levels):
        ctx = F.gelu(mod.focal_layers[level][0](ctx))
        ctx_all = ctx_all + ctx * gates[:, level : level + 1]
    ctx_global = F.gelu(ctx.mean(2, keepdim=True).mean(3, keepdim=True))
    ctx_all = ctx_all + ctx_global * gates[:, levels:]
    if mod.scaling_modulator:
        ctx_all = ctx_all / (levels + 1)
    out = (q * mod.h(ctx_all)).permute(0, 2, 3, 1).contiguous()
    if mod.use_postln_in_modulation:
        out = mod.ln(out)
    return mod.proj(out)


def _block(blk, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """One post-norm ``focal_dw`` block on ``tokens [B, L, C]``."""
    batch, length, channels = tokens.shape
    x = _nchw_residual_dw(blk.dw1, tokens, height, width)
    modulated = _modulation(blk.modulation, x.view(batch, height, width, channels)).view(batch, length, channels)
    x = blk.norm1(x + blk.gamma_1 * modulated)
    x = _nchw_residual_dw(blk.dw2, x, height, width)
    return blk.norm2(x + blk.gamma_2 * blk.mlp.fc2(blk.mlp.act(blk.mlp.fc1(x))))


def _patch_embed(embed, x: torch.Tensor) -> torch.Tensor:
    """Conv, then LayerNorm over channels; ``x [B, C, H, W]`` -> ``[B, C', H', W']`` (a strided view)."""
    if x.shape[-1] % embed.stride or x.shape[-2] % embed.stride:
        raise ValueError("the official-style path takes sizes divisible by the patch stride")
    x = embed.proj(x)
    batch, channels, height, width = x.shape
    x = embed.norm(x.flatten(2).transpose(1, 2))
    return x.transpose(1, 2).view(batch, channels, height, width)


def official_backbone(model: SeemModel, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """``x [B, 3, Hp, Wp]`` (normalised, padded) -> ``res2..res5`` NCHW contiguous maps."""
    net = model.backbone
    if net.variant != "focal_dw":
        raise ValueError("the official-style backbone is written for focal_dw (focal-T)")
    x = _patch_embed(net.patch_embed, x)
    height, width = x.shape[-2:]
    tokens = x.flatten(2).transpose(1, 2)
    outs = {}
    for i, layer in enumerate(net.layers):
        for blk in layer.blocks:
            tokens = _block(blk, tokens, height, width)
        batch, _, channels = tokens.shape
        stage = getattr(net, f"norm{i}")(tokens)
        outs[net.out_features[i]] = stage.view(batch, height, width, channels).permute(0, 3, 1, 2).contiguous()
        if layer.downsample is not None:
            x = _patch_embed(layer.downsample, tokens.transpose(1, 2).view(batch, channels, height, width))
            height, width = x.shape[-2:]
            tokens = x.flatten(2).transpose(1, 2)
    return outs


# ------------------------------------------------------------------------------------ pixel decoder
def _conv_norm_relu(conv: ConvNormAct, x: torch.Tensor, relu: bool) -> torch.Tensor:
    """detectron2's ``Conv2d``: conv, norm, then an out-of-place ReLU."""
    y = F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding)
    if conv.norm is not None:
        y = conv.norm(y)
    return F.relu(y) if relu else y


def official_pixel_decoder(
    decoder: TransformerEncoderPixelDecoder, features: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Official ``forward_features`` order on NCHW maps: ``(mask_features, encoder_features, multi_scale)``."""
    if decoder.absolute_position:
        raise ValueError("the official-style pixel decoder has no absolute positions (ours only)")
    res5 = features["res5"]
    projected = _conv_norm_relu(decoder.input_proj, res5, relu=False)
    height, width = projected.shape[-2:]
    pos = sine_position_embedding(height, width, decoder.conv_dim // 2, device=res5.device, dtype=res5.dtype)
    encoded = decoder.transformer(projected, pos)
    y = _conv_norm_relu(decoder.layer_4, encoded, relu=True)
    multi_scale = [y]
    for k in (3, 2, 1):
        lateral = _conv_norm_relu(getattr(decoder, f"adapter_{k}"), features[f"res{k + 1}"], relu=False)
        y = lateral + F.interpolate(y, size=lateral.shape[-2:], mode="nearest")
        y = _conv_norm_relu(getattr(decoder, f"layer_{k}"), y, relu=True)
        if len(multi_scale) < decoder.num_feature_levels:
            multi_scale.append(y)
    return _conv_norm_relu(decoder.mask_features, y, relu=False), encoded, multi_scale


def official_encode(model: SeemModel, image: torch.Tensor) -> OfficialEncoding:
    """Backbone + pixel decoder of ``image [1, 3, H, W]`` (RGB 0..255), official style."""
    x = model.preprocess(image)
    backbone = official_backbone(model, x)
    mask_features, encoder_features, multi_scale = official_pixel_decoder(model.sem_seg_head.pixel_decoder, backbone)
    flat = by_pixel(mask_features).contiguous()
    return OfficialEncoding(backbone, mask_features, encoder_features, multi_scale, flat,
                            tuple(image.shape[-2:]), tuple(x.shape[-2:]))


# ------------------------------------------------------------------------------------ decoder
def official_memory(model: SeemModel, encoding: OfficialEncoding) -> DecoderMemory:
    """The decoder's image inputs as the official decoder builds them at *every* call: level
    embeddings, sine positions, and each layer's key/value projections (no resized mask features:
    official-style decodes compute full-resolution masks at every layer)."""
    predictor = model.predictor
    src, pos, maps, sizes = [], [], [], []
    for level, feat in enumerate(encoding.multi_scale):
        batch, channels, height, width = feat.shape
        level_map = feat + predictor.level_embed.weight[level][None, :, None, None]
        pe = sine_position_embedding(height, width, channels // 2, device=feat.device, dtype=feat.dtype)
        sizes.append((height, width))
        maps.append(level_map)
        src.append(level_map.flatten(2).permute(2, 0, 1))
        pos.append(pe.flatten(2).permute(2, 0, 1).expand(-1, batch, -1))
    levels = predictor.cfg.num_feature_levels
    keys_values = [layer.project_memory(src[i % levels], src[i % levels] + pos[i % levels])
                   for i, layer in enumerate(predictor.transformer_cross_attention_layers)]
    return DecoderMemory(src, pos, maps, sizes, encoding.mask_features, encoding.mask_features_by_pixel, [], keys_values)


def official_features(model: SeemModel, encoding: OfficialEncoding) -> ImageFeatures:
    """:class:`ImageFeatures` around a freshly built :func:`official_memory` (call it per decode)."""
    return ImageFeatures(encoding.backbone, encoding.mask_features, encoding.multi_scale,
                         official_memory(model, encoding), encoding.image_size, encoding.padded_size)


def official_decode(model: SeemModel, encoding: OfficialEncoding, **decode_kwargs) -> tuple[ImageFeatures, DecoderOutput]:
    """One official-style decode: memory rebuilt, all object queries, full masks at every layer.

    ``decode_kwargs`` go to :meth:`SeemModel.decode` (``spatial=``, ``grounding=``, ``prev_mask=``...);
    a visual prompt is encoded by the caller on the returned features' memory, see
    :func:`official_click`."""
    features = official_features(model, encoding)
    return features, model.decode(features, include_object_queries=True, keep_aux=True, **decode_kwargs)


def official_click(model: SeemModel, encoding: OfficialEncoding, pos: torch.Tensor, neg: torch.Tensor,
                   **decode_kwargs) -> tuple[ImageFeatures, DecoderOutput]:
    """A visual-prompt round (``pos``/``neg`` bool ``[N, H, W]``), official style."""
    features = official_features(model, encoding)
    prompt = model.encode_visual_prompt(features, pos, neg)
    out = model.decode(features, spatial=prompt, include_object_queries=True, keep_aux=True, **decode_kwargs)
    return features, out
