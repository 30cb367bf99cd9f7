"""The SEEM decoder: masked-attention transformer over object, grounding and spatial queries.

Attribute names equal the official ``sem_seg_head.predictor`` so checkpoints load strictly (including
the official spelling ``mask_sptial_embed``). Which tokens attend to which is data, see
:mod:`napari_seem.model.layout`; the layer loop below is the same for the v1, v0 and demo logic.

Speed-relevant structure (all exact, no approximation):
* The key/value projections of the image features do not depend on prompts: :meth:`prepare_memory`
  computes them once per image into a :class:`DecoderMemory` that is reused for every click.
* In the v1/v0 layouts no prompt group attends to the object queries, so a prompted decode may skip
  them (``include_object_queries=False``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .config import DecoderConfig, TextConfig
from .layers import MLP, CrossAttentionLayer, FFNLayer, SelfAttentionLayer
from .layout import AttentionLayout, TokenGroup, group_slices, self_attention_allowed
from .position_encoding import absolute_sine_embedding, sine_position_embedding
from .text_encoder import LanguageEncoder
from .visual_sampler import VisualPrompt, level_tokens, mean_embeddings, sample_points

QUERY_GROUPS = ("queries_object", "queries_grounding", "queries_spatial")


def by_pixel(feature_map: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W] -> [B, H*W, C]``: a view of a channels-last map (a copy otherwise)."""
    batch, channels = feature_map.shape[:2]
    return feature_map.permute(0, 2, 3, 1).reshape(batch, -1, channels)


@dataclass
class DecoderMemory:
    """Everything the decoder needs from one image, computed once (:meth:`SeemDecoder.prepare_memory`).

    ``src``/``pos``: per level ``[HW_l, B, C]`` (features + level embedding; sine position).
    ``level_maps``: per level ``[B, C, H_l, W_l]`` (``src`` as an image, for sampling point tokens).
    ``sizes``: per level ``(H_l, W_l)``; levels are strides 32, 16, 8.
    ``mask_features``: ``[B, C, H/4, W/4]``; ``mask_features_by_pixel``: the same as
    ``[B, H/4 * W/4, C]`` (free from the pixel decoder's channels-last maps). ``level_mask_features``:
    per level, the mask features resized (bilinear) to that level, ``[B, H_l * W_l, C]``: since
    resizing is linear, the attention masks of intermediate layers come from them directly, without
    full-resolution masks. Mask logits are ``features_by_pixel @ mask_emb^T``: with pixels as the
    rows this product runs ~4x faster than ``mask_emb @ [C, HW]`` for a prompt's few queries. ``keys_values``: per decoder layer, the projected
    ``(keys, values)`` ``[B, heads, HW_l, C/heads]`` of that layer's level.
    """

    src: list[torch.Tensor]
    pos: list[torch.Tensor]
    level_maps: list[torch.Tensor]
    sizes: list[tuple[int, int]]
    mask_features: torch.Tensor
    mask_features_by_pixel: torch.Tensor
    level_mask_features: list[torch.Tensor]
    keys_values: list[tuple[torch.Tensor, torch.Tensor]]

    @property
    def batch_size(self) -> int:
        return self.mask_features.shape[0]


@dataclass
class Prediction:
    """Head outputs for one query group: ``class_emb``/``mask_emb`` ``[B, n, C]``, ``masks [B, n, h, w]``
    (mask logits at 1/4 resolution), ``logits [B, n, K+1]`` (object queries, when a vocabulary is set)."""

    class_emb: torch.Tensor | None
    mask_emb: torch.Tensor
    masks: torch.Tensor
    logits: torch.Tensor | None = None


@dataclass
class DecoderOutput:
    """``predictions[-1]`` is the final prediction per query group; earlier entries (kept on request)
    are the auxiliary ones (index 0 = from the learned queries, before any layer)."""

    predictions: list[dict[str, Prediction]]
    spatial: VisualPrompt | None = None
    visual: VisualPrompt | None = None
    spatial_query_indices: torch.Tensor | None = None
    query_states: list[torch.Tensor] = field(default_factory=list)

    @property
    def final(self) -> dict[str, Prediction]:
        return self.predictions[-1]


@dataclass
class GroundingPrompt:
    """Text tokens for grounding: ``tokens [T, B, C]`` and ``padding [B, T]`` (True = padded)."""

    tokens: torch.Tensor
    padding: torch.Tensor


class SeemDecoder(nn.Module):
    """``sem_seg_head.predictor`` of the official model."""

    def __init__(self, cfg: DecoderConfig, text: TextConfig, mask_dim: int) -> None:
        super().__init__()
        hidden = cfg.hidden_dim
        if mask_dim != hidden:
            raise ValueError(f"mask_dim ({mask_dim}) must equal the decoder hidden_dim ({hidden})")
        self.cfg = cfg
        self.num_heads = cfg.nheads
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(hidden, cfg.nheads) for _ in range(cfg.num_layers)
        )
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(hidden, cfg.nheads) for _ in range(cfg.num_layers)
        )
        self.transformer_ffn_layers = nn.ModuleList(
            FFNLayer(hidden, cfg.dim_feedforward) for _ in range(cfg.num_layers)
        )
        self.decoder_norm = nn.LayerNorm(hidden)
        self.query_feat = nn.Embedding(cfg.num_queries, hidden)
        self.query_embed = nn.Embedding(cfg.num_queries, hidden)
        self.pn_indicator = nn.Embedding(2, hidden)
        self.level_embed = nn.Embedding(cfg.num_feature_levels, hidden)
        self.lang_encoder = LanguageEncoder(
            vocab_size=text.vocab_size,
            context_length=text.context_length,
            width=text.width,
            layers=text.layers,
            heads=text.heads,
            proj_dim=cfg.dim_proj,
        )
        self.mask_embed = MLP(hidden, hidden, mask_dim, 3)
        self.class_embed = nn.Parameter(torch.randn(hidden, cfg.dim_proj) * 0.02)
        self.mask_sptial_embed = nn.ParameterList(
            nn.Parameter(torch.randn(hidden, hidden) * 0.02) for _ in range(cfg.num_feature_levels)
        )
        self.spatial_embed = nn.Embedding(cfg.spatial_memories, hidden)
        self.spatial_featured = nn.Embedding(cfg.spatial_memories, hidden)
        if cfg.prompt_similarity:  # ours (see _prompt_bias)
            self.prompt_similarity_scale = nn.Parameter(torch.ones(()))
        # Normalised class-name embeddings [K+1, dim_proj] (last = background); set by a vocabulary.
        self.register_buffer("vocabulary_embeddings", None, persistent=False)
        # Input-pixel (y, x) of the image's top-left corner for cfg.absolute_position (training crops).
        self.position_offset: tuple[float, float] = (0.0, 0.0)

    # ------------------------------------------------------------------ image memory
    def prepare_memory(self, multi_scale: list[torch.Tensor], mask_features: torch.Tensor) -> DecoderMemory:
        """Per-image decoder inputs from the pixel decoder's ``multi_scale`` maps (strides 32, 16, 8).

        With ``cfg.absolute_position`` (ours, off in the official configs) an absolute-pixel sine
        embedding is added to the mask features and to each level map: point tokens and prompt
        embeddings then say *where* the prompt is, and a query's mask can select a location, which
        lets a small model trained from scratch tell apart touching objects that look alike. The
        same embedding replaces the size-normalised one of the cross-attention keys, so that a
        model trained on crops attends the same way on whole images.
        """
        if self.cfg.absolute_position:
            mask_features = mask_features + self._absolute_position(mask_features, 4.0)
        src, pos, maps, sizes = [], [], [], []
        for level, feat in enumerate(multi_scale):
            _, _, height, width = feat.shape
            level_map = feat + self.level_embed.weight[level][None, :, None, None]
            if self.cfg.absolute_position:
                pe = self._absolute_position(feat, 4.0 * mask_features.shape[-2] / height)
                level_map = level_map + pe
            else:
                pe = sine_position_embedding(height, width, feat.shape[1] // 2, device=feat.device, dtype=feat.dtype)
            sizes.append((height, width))
            maps.append(level_map)
            src.append(level_map.flatten(2).permute(2, 0, 1))
            pos.append(pe.flatten(2).permute(2, 0, 1).expand(-1, feat.shape[0], -1))
        levels = self.cfg.num_feature_levels
        # Keys see features + positions; shared by the layers of a level, so added once per level.
        keyed = [(s + p).contiguous() for s, p in zip(src, pos)]
        keys_values = [
            layer.project_memory(src[i % levels], keyed[i % levels])
            for i, layer in enumerate(self.transformer_cross_attention_layers)
        ]
        level_mask_features = [
            by_pixel(F.interpolate(mask_features, size=size, mode="bilinear", align_corners=False)) for size in sizes
        ]
        return DecoderMemory(src, pos, maps, sizes, mask_features, by_pixel(mask_features), level_mask_features,
                             keys_values)

    def _absolute_position(self, feature_map: torch.Tensor, stride: float) -> torch.Tensor:
        """``[1, C, H, W]`` absolute sine embedding for ``feature_map [B, C, H, W]`` at ``stride``
        (shifted by ``position_offset``, input pixels (y, x): training sets it to place a crop
        anywhere in an image; it is (0, 0) otherwise)."""
        _, channels, height, width = feature_map.shape
        return absolute_sine_embedding(height, width, stride, channels // 2, self.position_offset,
                                       device=feature_map.device, dtype=feature_map.dtype)

    # ------------------------------------------------------------------ prompts
    def encode_visual_prompt(
        self,
        memory: DecoderMemory,
        pos_masks: list[torch.Tensor],
        neg_masks: list[torch.Tensor],
        layout: AttentionLayout,
        generator: torch.Generator | None = None,
    ) -> VisualPrompt:
        """Sample the prompt masks (per image ``[N, Hp, Wp]`` bool) into embeddings and point tokens.

        This is also the official reference-image ('refimg') step: the result can be applied to
        another image's decoder memory.
        """
        per_object = layout.per_object_prompts
        num_objects = max(m.shape[0] for m in pos_masks) if per_object else 1
        max_len = self.cfg.max_spatial_len

        def points(masks: list[torch.Tensor], level: int) -> list[torch.Tensor]:
            return [sample_points(m, max_len[level], per_object, generator) for m in masks]

        empty = layout.empty_prompt_value
        pos_embedding = mean_embeddings(memory.mask_features, points(pos_masks, -1), num_objects, empty)
        neg_embedding = mean_embeddings(memory.mask_features, points(neg_masks, -1), num_objects, empty)
        tokens, padding, object_index = [], [], []
        for level, level_map in enumerate(memory.level_maps):
            t, p, o = level_tokens(
                level_map,
                self.mask_sptial_embed[level],
                points(pos_masks, level),
                points(neg_masks, level),
                self.pn_indicator.weight,
            )
            tokens.append(t)
            padding.append(p)
            object_index.append(o)
        return VisualPrompt(pos_embedding, neg_embedding, tokens, padding, object_index)

    def grounding_prompt(self, texts: list[str], batch_size: int = 1) -> tuple[GroundingPrompt, torch.Tensor]:
        """Text tokens of ``texts`` for grounding, and each text's sentence embedding ``[n, dim_proj]``."""
        tokens, class_emb = self.lang_encoder.grounding_tokens(texts)
        tokens = tokens.expand(-1, batch_size, -1)
        padding = torch.zeros(batch_size, tokens.shape[0], dtype=torch.bool, device=tokens.device)
        return GroundingPrompt(tokens, padding), class_emb

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        memory: DecoderMemory,
        layout: AttentionLayout,
        *,
        spatial: VisualPrompt | None = None,
        visual: VisualPrompt | None = None,
        grounding: GroundingPrompt | None = None,
        prev_mask: torch.Tensor | None = None,
        spatial_query_indices: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        memory_generator: torch.Generator | None = None,
        include_object_queries: bool = True,
        keep_aux: bool = False,
        keep_query_states: bool = False,
    ) -> DecoderOutput:
        """Run the decoder on one image's ``memory``.

        ``spatial``: visual prompt on this image (or a reference image's, v1). ``visual``: reference
        tokens (demo layout). ``prev_mask [B, N, h, w]``: previous round's mask logits (memory prompt).
        ``spatial_query_indices [queries_per_prompt * N]``: which object queries seed the v1 spatial
        queries; drawn from ``generator`` (default: a generator seeded 0, so results are reproducible).
        ``memory_generator``: draw the v1 split of memory tokens among objects at random, as the
        official code does at every layer; without it the split is even and fixed.
        """
        batch = memory.batch_size
        groups, query_indices = self._initial_groups(
            layout, batch, spatial, grounding, prev_mask, spatial_query_indices, generator, include_object_queries
        )
        cross_slices = group_slices(layout.cross, groups)
        keep_all = keep_aux
        predictions, query_states = [], []
        bias = self._prompt_bias(groups, spatial)
        pred, allowed = self._predict(groups, layout, memory, 0, bias, full=keep_all)
        if keep_all:
            predictions.append(pred)
        levels = self.cfg.num_feature_levels
        for i in range(self.cfg.num_layers):
            level = i % levels
            if "memories_spatial" in groups:
                self._assign_memories(groups["memories_spatial"], layout, prev_mask.shape[1], memory_generator)
                allowed = self._memory_cross_mask(allowed, cross_slices["memories_spatial"], groups, prev_mask, memory.sizes[level])
            allowed = allowed | ~allowed.any(-1, keepdim=True)  # a query blocked everywhere sees everything
            self._cross_attend(i, groups, layout, memory, allowed)
            self._set_level_tokens(groups, spatial, visual, layout, level)
            self._self_attend_and_ffn(i, groups, layout)
            if keep_query_states and "queries_object" in groups:
                query_states.append(groups["queries_object"].content)
            last = i == self.cfg.num_layers - 1
            pred, allowed = self._predict(groups, layout, memory, (i + 1) % levels, bias, full=keep_all or last)
            if keep_all or last:
                predictions.append(pred)
        return DecoderOutput(predictions, spatial, visual, query_indices, query_states)

    def _prompt_bias(self, groups, spatial: VisualPrompt | None) -> torch.Tensor | None:
        """With ``cfg.prompt_similarity``: ``[B, kN, C]``, added to the spatial queries' mask embeddings,
        each query's prompt embedding (normalised) times the learned scale. Its mask then holds the
        similarity of every pixel's mask feature to the prompt's, and with ``absolute_position`` that
        feature carries where the prompt is: the mask starts at the prompted place, not anywhere the
        same kind of object is."""
        if not self.cfg.prompt_similarity or spatial is None or "queries_spatial" not in groups:
            return None
        direction = F.normalize(spatial.pos_embedding, dim=-1)  # [B, N, C]
        index = groups["queries_spatial"].object_index  # [B, kN]
        picked = torch.gather(direction, 1, index[..., None].expand(-1, -1, direction.shape[-1]))
        return self.prompt_similarity_scale * picked

    def _initial_groups(
        self, layout, batch, spatial, grounding, prev_mask, indices, generator, include_object
    ) -> tuple[dict[str, TokenGroup], torch.Tensor | None]:
        content = self.query_feat.weight[:, None].expand(-1, batch, -1)
        pos = self.query_embed.weight[:, None].expand(-1, batch, -1)
        groups: dict[str, TokenGroup] = {}
        prompted = spatial is not None or grounding is not None
        if include_object or layout.name == "demo" or not prompted:
            groups["queries_object"] = TokenGroup(content, pos)
        if grounding is not None:
            if "queries_grounding" in layout.cross:
                groups["queries_grounding"] = TokenGroup(content, pos)
            groups["tokens_grounding"] = TokenGroup(grounding.tokens, grounding.tokens.detach().clone(), grounding.padding)
        if spatial is not None and layout.spatial_queries != "none":
            indices = self._spatial_query_indices(layout, spatial.num_objects, indices, generator)
            object_index = torch.arange(spatial.num_objects, device=content.device)
            object_index = object_index.repeat_interleave(len(indices) // spatial.num_objects)
            groups["queries_spatial"] = TokenGroup(
                content[indices], pos[indices], object_index=object_index[None].expand(batch, -1)
            )
            if prev_mask is not None and layout.memory != "none":
                groups["memories_spatial"] = TokenGroup(
                    self.spatial_featured.weight[:, None].expand(-1, batch, -1),
                    self.spatial_embed.weight[:, None].expand(-1, batch, -1),
                )
        return groups, (indices if spatial is not None and layout.spatial_queries == "sampled" else None)

    def _spatial_query_indices(self, layout, num_objects, indices, generator) -> torch.Tensor:
        num_queries = self.cfg.num_queries
        if layout.spatial_queries == "all":
            return torch.arange(num_queries, device=self.query_feat.weight.device)
        wanted = self.cfg.queries_per_prompt * num_objects
        if indices is None:
            generator = generator if generator is not None else torch.Generator().manual_seed(0)
            indices = torch.randint(0, num_queries, (wanted,), generator=generator)
        indices = torch.as_tensor(indices, dtype=torch.long).flatten()
        if indices.numel() != wanted or int(indices.min()) < 0 or int(indices.max()) >= num_queries:
            raise ValueError(
                f"spatial_query_indices must be {wanted} indices in [0, {num_queries}) "
                f"({self.cfg.queries_per_prompt} per prompt object), got {indices.tolist()}"
            )
        return indices.to(self.query_feat.weight.device)

    def _assign_memories(self, group: TokenGroup, layout, num_objects: int, generator) -> None:
        """Which prompt object each memory token serves (v1); v0 shares all memories with object 0.

        The official v1 redraws this at every layer with ``torch.multinomial`` on the global RNG; here a
        caller-supplied generator does the same draw, and without one the split is even and fixed.
        """
        count, batch = group.content.shape[0], group.content.shape[1]
        device = group.content.device
        if layout.memory == "shared" or num_objects == 1:
            index = torch.zeros(count, dtype=torch.long, device=device)
        elif generator is not None:
            index = torch.multinomial(torch.ones(num_objects), count, replacement=True, generator=generator).sort().values
        else:
            index = torch.arange(count) * num_objects // count
        group.object_index = index.to(device)[None].expand(batch, -1)

    def _memory_cross_mask(self, allowed, rows: slice, groups, prev_mask, size) -> torch.Tensor:
        prev = F.interpolate(prev_mask, size=size, mode="bilinear", align_corners=False)
        prev_allowed = prev.sigmoid().flatten(2) >= 0.5  # [B, N, HW]
        index = groups["memories_spatial"].object_index  # [B, M]
        allowed = allowed.clone()
        allowed[:, rows] = torch.gather(prev_allowed, 1, index[..., None].expand(-1, -1, prev_allowed.shape[-1]))
        return allowed

    def _cross_attend(self, i: int, groups, layout, memory: DecoderMemory, allowed: torch.Tensor) -> None:
        names = [n for n in layout.cross if n in groups]
        content = torch.cat([groups[n].content for n in names])
        pos = torch.cat([groups[n].pos for n in names])
        keys, values = memory.keys_values[i]
        out = self.transformer_cross_attention_layers[i](content, pos, keys, values, allowed[:, None])
        self._write_back(out, names, groups)

    def _set_level_tokens(self, groups, spatial, visual, layout, level: int) -> None:
        for name, prompt in (("tokens_spatial", spatial), ("tokens_visual", visual)):
            if prompt is None or name not in layout.self_order:
                continue
            tokens = prompt.tokens[level]
            groups[name] = TokenGroup(
                tokens, tokens.detach().clone(), prompt.padding[level], prompt.object_index[level]
            )

    def _self_attend_and_ffn(self, i: int, groups, layout) -> None:
        names = [n for n in layout.self_order if n in groups]
        content = torch.cat([groups[n].content for n in names])
        pos = torch.cat([groups[n].pos for n in names])
        allowed = self_attention_allowed(layout, {n: groups[n] for n in names})
        out = self.transformer_self_attention_layers[i](content, pos, allowed[:, None])
        out = self.transformer_ffn_layers[i](out)
        self._write_back(out, names, groups)

    @staticmethod
    def _write_back(out: torch.Tensor, names: list[str], groups) -> None:
        start = 0
        for name in names:
            n = len(groups[name])
            groups[name].content = out[start : start + n]
            start += n

    # ------------------------------------------------------------------ heads
    def _predict(
        self, groups, layout, memory: DecoderMemory, level: int, bias: torch.Tensor | None, full: bool
    ) -> tuple[dict[str, Prediction], torch.Tensor]:
        """Heads on the cross-attention sequence; returns per-group predictions (when ``full``) and the
        next layer's cross-attention *allowed* mask ``[B, Q, H_l*W_l]`` (sigmoid(mask) >= 0.5) for
        decoder level ``level``."""
        names = [n for n in layout.cross if n in groups]
        content = torch.cat([groups[n].content for n in names])
        normed = self.decoder_norm(content).transpose(0, 1)  # [B, Q, C]
        mask_emb = self.mask_embed(normed)
        if bias is not None:  # cfg.prompt_similarity: see _prompt_bias
            rows = group_slices(names, groups)["queries_spatial"]
            mask_emb = torch.cat([mask_emb[:, : rows.start], mask_emb[:, rows] + bias, mask_emb[:, rows.stop :]], 1)
        if not full:
            # resize(mask_emb . F) == mask_emb . resize(F): skip the full-resolution masks.
            level_masks = torch.bmm(memory.level_mask_features[level], mask_emb.transpose(1, 2)).transpose(1, 2)
            return {}, level_masks.sigmoid() >= 0.5
        height, width = memory.mask_features.shape[-2:]
        masks = torch.bmm(memory.mask_features_by_pixel, mask_emb.transpose(1, 2)).transpose(1, 2)
        masks = masks.reshape(*mask_emb.shape[:2], height, width)
        resized = F.interpolate(masks, size=memory.sizes[level], mode="bilinear", align_corners=False)
        allowed = resized.sigmoid().flatten(2) >= 0.5
        class_emb = normed @ self.class_embed
        predictions, start = {}, 0
        for name in names:
            rows = slice(start, start + len(groups[name]))
            start = rows.stop
            if name not in QUERY_GROUPS:
                continue
            logits = self.class_logits(class_emb[:, rows]) if name == "queries_object" else None
            predictions[name] = Prediction(class_emb[:, rows], mask_emb[:, rows], masks[:, rows], logits)
        return predictions, allowed

    def class_logits(self, class_emb: torch.Tensor) -> torch.Tensor | None:
        """``exp(logit_scale) * cos(class_emb, vocabulary)``: ``[B, n, C] -> [B, n, K+1]`` (None without vocabulary)."""
        if self.vocabulary_embeddings is None:
            return None
        normed = class_emb / (class_emb.norm(dim=-1, keepdim=True) + 1e-7)
        return self.lang_encoder.logit_scale.exp() * normed @ self.vocabulary_embeddings.t()
