"""FocalNet backbone (focal modulation networks) as used by SEEM / X-Decoder.

Two flavours, selected with ``variant``:

* ``"focal_dw"`` (SEEM Focal-T): post-norm blocks with an extra depthwise 3x3 conv (``dw1``/``dw2``)
  before each of the two residual branches; stem conv padding 3.
* ``"focal"`` (SEEM Focal-L): "res-post-norm" blocks (the LayerNorm is applied to the branch output
  before the residual add); no depthwise convs; stem conv padding 2.

Attribute names follow the official code so that the checkpoint's ``backbone.*`` keys load with
``strict=True``.

Layout: inside the network activations are kept as logical ``[B, H, W, C]`` contiguous tensors
(channels-last), because every Linear / LayerNorm acts on the channel dim and the depthwise convs
run much faster on CPU with ``torch.channels_last`` memory format. A conv is applied to
``x.permute(0, 3, 1, 2)`` (an NCHW view with channels-last strides, no copy) and its output is
permuted back (again no copy).
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FocalNet", "FocalModulation", "FocalNetBlock"]

_VARIANTS = ("focal_dw", "focal")


def _conv_nhwc(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """Apply ``conv`` to a ``[B, H, W, C]`` tensor; returns ``[B, H', W', C']`` (contiguous).

    The permutes are free: ``x.permute(0, 3, 1, 2)`` is NCHW with channels-last strides, which makes
    oneDNN pick its channels-last kernels and return a channels-last output.
    """
    y = conv(x.permute(0, 3, 1, 2))
    y = y.permute(0, 2, 3, 1)
    # The output is channels-last already; .contiguous() is then a no-op (it copies only in the
    # unusual case where the backend returned NCHW memory).
    return y.contiguous()


def _linear_scaled(x: torch.Tensor, lin: nn.Linear, scale: torch.Tensor | None) -> torch.Tensor:
    """``scale * lin(x)`` for a per-output-channel ``scale [Cout]``.

    Folding ``scale`` into the weights costs ``Cin*Cout`` multiplies, scaling the output costs
    ``tokens*Cout``: fold only when the feature map has more tokens than the layer has inputs
    (early, high-resolution stages), scale the output otherwise (late stages with large weights).
    """
    if scale is None:
        return lin(x)
    if x.numel() // x.shape[-1] > lin.in_features:
        return F.linear(x, lin.weight * scale[:, None], lin.bias * scale)
    return lin(x) * scale


class Mlp(nn.Module):
    """``fc1 -> GELU(exact) -> fc2`` on the last dim. ``[..., C] -> [..., C]``."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor, out_scale: torch.Tensor | None = None) -> torch.Tensor:
        """``[..., C] -> [..., C]``; optional ``out_scale [C]`` is folded into ``fc2``."""
        return _linear_scaled(self.act(self.fc1(x)), self.fc2, out_scale)


class FocalModulation(nn.Module):
    """Focal modulation: hierarchical depthwise context + gated aggregation + modulator.

    ``forward(x: [B, H, W, C]) -> [B, H, W, C]``.

    Keys: ``f`` (Linear C -> 2C+L+1), ``h`` (1x1 conv C -> C), ``proj`` (Linear C -> C),
    ``focal_layers.{l}.0`` (depthwise conv, kernel ``focal_factor*l + focal_window``, no bias),
    optionally ``ln`` (``use_postln_in_modulation``; off in SEEM).
    """

    def __init__(
        self,
        dim: int,
        focal_level: int = 3,
        focal_window: int = 3,
        focal_factor: int = 2,
        scaling_modulator: bool = True,
        use_postln_in_modulation: bool = False,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.focal_level = focal_level
        self.scaling_modulator = scaling_modulator
        self.use_postln_in_modulation = use_postln_in_modulation

        self.f = nn.Linear(dim, 2 * dim + focal_level + 1, bias=True)
        self.h = nn.Conv2d(dim, dim, kernel_size=1, stride=1, padding=0, groups=1, bias=True)
        self.act = nn.GELU()
        self.proj = nn.Linear(dim, dim)
        self.focal_layers = nn.ModuleList()
        for level in range(focal_level):
            k = focal_factor * level + focal_window
            # Sequential(conv, GELU) only to reproduce the key "focal_layers.{l}.0.weight".
            self.focal_layers.append(
                nn.Sequential(
                    nn.Conv2d(dim, dim, kernel_size=k, stride=1, groups=dim, padding=k // 2, bias=False),
                    nn.GELU(),
                )
            )
        if use_postln_in_modulation:
            self.ln = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, out_scale: torch.Tensor | None = None) -> torch.Tensor:
        """``x: [B, H, W, C] -> [B, H, W, C]``; ``out_scale [C]`` (optional) scales the output channels.

        ``out_scale`` lets a block fold its layerscale ``gamma`` into ``proj`` (a ``C x C`` weight
        scaling instead of an elementwise pass over the whole feature map).
        """
        c, n_levels = self.dim, self.focal_level
        q, ctx, gates = torch.split(self.f(x), (c, c, n_levels + 1), dim=-1)  # [B, H, W, C|C|L+1]
        # The depthwise conv wants a dense channels-last input; the split slice is strided. (Two
        # separate GEMMs to avoid this copy were measured: no faster.)
        ctx = ctx.contiguous()

        ctx_all = None
        for level in range(n_levels):
            # Levels are chained: each one convolves the previous level's context.
            ctx = F.gelu(_conv_nhwc(self.focal_layers[level][0], ctx))
            gate = gates[..., level : level + 1]
            ctx_all = ctx * gate if ctx_all is None else ctx_all.addcmul_(ctx, gate)

        # Global context: mean over H then W (same reduction order as the official NCHW code).
        ctx_global = F.gelu(ctx.mean(1, keepdim=True).mean(2, keepdim=True))  # [B, 1, 1, C]
        if ctx_all is None:  # focal_level == 0
            ctx_all = ctx_global * gates[..., n_levels:]
        else:
            ctx_all = ctx_all.addcmul_(ctx_global, gates[..., n_levels:])
        if self.scaling_modulator:
            ctx_all = ctx_all / (n_levels + 1)

        # h is a 1x1 conv == a Linear on the channel dim in NHWC layout.
        out = q * F.linear(ctx_all, self.h.weight.view(c, c), self.h.bias)
        if self.use_postln_in_modulation:
            out = self.ln(out)
        return _linear_scaled(out, self.proj, out_scale)


class FocalNetBlock(nn.Module):
    """One FocalNet block. ``forward(x: [B, H, W, C]) -> [B, H, W, C]``.

    ``focal_dw`` (post-norm)::

        x = x + dw1(x);  x = norm1(x + gamma_1 * modulation(x))
        x = x + dw2(x);  x = norm2(x + gamma_2 * mlp(x))

    ``focal`` (res-post-norm)::

        x = x + gamma_1 * norm1(modulation(x));  x = x + gamma_2 * norm2(mlp(x))

    Drop path is the identity at inference and therefore omitted.
    """

    def __init__(
        self,
        dim: int,
        variant: str = "focal_dw",
        mlp_ratio: float = 4.0,
        focal_level: int = 3,
        focal_window: int = 3,
        use_layerscale: bool = True,
        layerscale_value: float = 1e-4,
        scaling_modulator: bool = True,
        use_postln_in_modulation: bool = False,
    ) -> None:
        super().__init__()
        if variant not in _VARIANTS:
            raise ValueError(f"variant must be one of {_VARIANTS}, got {variant!r}")
        self.variant = variant
        self.use_layerscale = use_layerscale
        if use_layerscale:
            # Own parameters first: this matches the official state-dict order.
            self.gamma_1 = nn.Parameter(layerscale_value * torch.ones(dim))
            self.gamma_2 = nn.Parameter(layerscale_value * torch.ones(dim))
        if variant == "focal_dw":
            self.dw1 = nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim)
        self.modulation = FocalModulation(
            dim,
            focal_level=focal_level,
            focal_window=focal_window,
            scaling_modulator=scaling_modulator,
            use_postln_in_modulation=use_postln_in_modulation,
        )
        if variant == "focal_dw":
            self.dw2 = nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=1, groups=dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def _gammas(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if not self.use_layerscale:
            return None, None
        return self.gamma_1, self.gamma_2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g1, g2 = self._gammas()
        if self.variant == "focal_dw":
            # gamma is folded into the last Linear of each branch (see _linear_scaled).
            x = x + _conv_nhwc(self.dw1, x)
            x = self.norm1(x + self.modulation(x, g1))
            x = x + _conv_nhwc(self.dw2, x)
            x = self.norm2(x + self.mlp(x, g2))
        else:
            # gamma * LayerNorm(y) == LayerNorm with gamma folded into its affine parameters.
            x = x + _layer_norm_scaled(self.modulation(x), self.norm1, g1)
            x = x + _layer_norm_scaled(self.mlp(x), self.norm2, g2)
        return x


def _layer_norm_scaled(x: torch.Tensor, ln: nn.LayerNorm, scale: torch.Tensor | None) -> torch.Tensor:
    """``scale * ln(x)`` with ``scale [C]`` folded into the LayerNorm's affine weight and bias."""
    if scale is None:
        return ln(x)
    return F.layer_norm(x, ln.normalized_shape, ln.weight * scale, ln.bias * scale, ln.eps)


class PatchEmbed(nn.Module):
    """Conv patch embedding + LayerNorm. ``forward(x: [B, H, W, Cin]) -> [B, H', W', Cout]``.

    Stem (``is_stem``): 7x7 conv, stride 4, padding 3 (focal_dw) or 2 (focal).
    Downsampling between stages: 3x3 conv, stride 2, padding 1.
    Like the official code, H and W are first zero-padded bottom/right to a multiple of the stride.
    """

    def __init__(self, in_chans: int, embed_dim: int, is_stem: bool, stem_padding: int = 3) -> None:
        super().__init__()
        if is_stem:
            kernel, stride, padding = 7, 4, stem_padding
        else:
            kernel, stride, padding = 3, 2, 1
        self.stride = stride
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=kernel, stride=stride, padding=padding)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[1], x.shape[2]
        pad_h, pad_w = (-h) % self.stride, (-w) % self.stride
        if pad_h or pad_w:
            x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))  # NHWC: (C, W, H) pairs, last dim first
        return self.norm(_conv_nhwc(self.proj, x))


class BasicLayer(nn.Module):
    """A stage: ``depth`` blocks, then an optional downsampling PatchEmbed (dim -> 2*dim).

    ``forward(x: [B, H, W, C]) -> (stage_out [B, H, W, C], next_in [B, ceil(H/2), ceil(W/2), 2C] or None)``.
    """

    def __init__(self, dim: int, depth: int, downsample: bool, **block_kwargs) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(FocalNetBlock(dim, **block_kwargs) for _ in range(depth))
        self.downsample = PatchEmbed(dim, 2 * dim, is_stem=False) if downsample else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        for blk in self.blocks:
            x = blk(x)
        x_down = self.downsample(x) if self.downsample is not None else None
        return x, x_down


class FocalNet(nn.Module):
    """FocalNet backbone (SEEM's ``D2FocalNet``), inference only.

    ``forward(x: [B, 3, H, W])`` with ``x`` already normalised and padded to a multiple of 32 returns
    ``{"res2": [B, C, H/4, W/4], "res3": [B, 2C, H/8, W/8], "res4": [B, 4C, H/16, W/16],
    "res5": [B, 8C, H/32, W/32]}``: each stage's output after ``norm{i}`` (before downsampling).
    The returned tensors are logically NCHW but have ``torch.channels_last`` memory format (no copy
    is made); use ``.reshape``/``.flatten`` rather than ``.view`` on them.

    Focal-T (SEEM): defaults. Focal-L: ``embed_dim=192, depths=(2, 2, 18, 2),
    focal_levels=(4, 4, 4, 4), variant="focal"``.
    """

    def __init__(
        self,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        focal_levels: Sequence[int] = (3, 3, 3, 3),
        focal_windows: Sequence[int] = (3, 3, 3, 3),
        mlp_ratio: float = 4.0,
        variant: str = "focal_dw",
        use_layerscale: bool = True,
        layerscale_value: float = 1e-4,
        scaling_modulator: bool = True,
        use_postln_in_modulation: bool = False,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        if variant not in _VARIANTS:
            raise ValueError(f"variant must be one of {_VARIANTS}, got {variant!r}")
        n = len(depths)
        if not (len(focal_levels) == len(focal_windows) == n):
            raise ValueError("depths, focal_levels and focal_windows must have the same length")
        self.variant = variant
        self.num_layers = n
        self.out_channels: List[int] = [int(embed_dim * 2**i) for i in range(n)]
        self.out_features: List[str] = [f"res{i + 2}" for i in range(n)]
        self.out_strides: List[int] = [4 * 2**i for i in range(n)]
        self.size_divisibility = 32

        self.patch_embed = PatchEmbed(
            in_chans, embed_dim, is_stem=True, stem_padding=3 if variant == "focal_dw" else 2
        )
        self.layers = nn.ModuleList(
            BasicLayer(
                self.out_channels[i],
                depths[i],
                downsample=i < n - 1,
                variant=variant,
                mlp_ratio=mlp_ratio,
                focal_level=focal_levels[i],
                focal_window=focal_windows[i],
                use_layerscale=use_layerscale,
                layerscale_value=layerscale_value,
                scaling_modulator=scaling_modulator,
                use_postln_in_modulation=use_postln_in_modulation,
            )
            for i in range(n)
        )
        for i, c in enumerate(self.out_channels):
            self.add_module(f"norm{i}", nn.LayerNorm(c))

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        # NCHW -> contiguous NHWC (one small copy of the 3-channel input); from here on every conv
        # sees an NCHW view with channels-last strides.
        x = x.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)
        x = self.patch_embed(x)
        outs: Dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.layers):
            stage_out, x = layer(x)
            outs[self.out_features[i]] = getattr(self, f"norm{i}")(stage_out).permute(0, 3, 1, 2)
        return outs
