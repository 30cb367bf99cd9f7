"""Which decoder tokens attend to which: the three official attention layouts as data.

The SEEM decoder concatenates several *groups* of tokens into one sequence:

==================  =====================================================================
``queries_object``    the 101 learned object queries (generic segmentation, classes)
``queries_grounding`` a copy of the object queries that reads text tokens
``queries_spatial``   copies of object queries that read visual-prompt tokens
``tokens_grounding``  text tokens (evolve across layers)
``tokens_spatial``    visual-prompt point tokens (re-sampled from the image at every layer)
``tokens_visual``     reference-image point tokens (demo layout only)
``memories_spatial``  32 learned memory tokens masked to the previous round's mask
==================  =====================================================================

A layout says which groups cross-attend to the image, which group may attend to which in
self-attention, and how visual prompts are turned into queries. ``v1``, ``v0`` and ``demo`` are the
three layouts the official code runs on the same weights. ``v1_grounded``/``v0_grounded`` are v1/v0
with the official ``STROKE_SAMPLER.EVAL.GROUNDING`` hook: the spatial queries also read the text
tokens, which composes a text prompt with a visual prompt for the same object.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch


@dataclass(frozen=True)
class AttentionLayout:
    name: str
    cross: tuple[str, ...]
    """Groups that cross-attend to image features, in sequence order."""
    self_attention: tuple[tuple[str, tuple[str, ...]], ...]
    """Ordered ``(group, groups it may attend to)``; the order is the self-attention sequence order."""
    masking: tuple[str, ...]
    """Token groups whose padded entries are masked out."""
    spatial_queries: Literal["sampled", "all", "none"]
    """v1 draws ``queries_per_prompt`` object queries per prompt object; v0 copies all; demo has none."""
    memory: Literal["split", "shared", "none"]
    """v1 splits the memories among objects; v0 gives all of them the single previous mask."""
    per_object_prompts: bool
    """v1 keeps each prompt object's points apart (block-diagonal attention); v0/demo merge them."""
    empty_prompt_value: float
    """Mean embedding of a prompt with no points: -1 in v1, 0 in v0/demo (mean of nothing, nan->0)."""

    @property
    def self_order(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.self_attention)


_GROUNDING_SELF = (
    ("queries_grounding", ("queries_grounding", "tokens_grounding")),
    ("tokens_grounding", ("queries_grounding", "tokens_grounding")),
)

V1 = AttentionLayout(
    name="v1",
    cross=("queries_object", "queries_grounding", "queries_spatial", "memories_spatial"),
    self_attention=(
        ("queries_object", ("queries_object",)),
        _GROUNDING_SELF[0],
        ("queries_spatial", ("queries_spatial", "tokens_spatial", "memories_spatial")),
        _GROUNDING_SELF[1],
        ("tokens_spatial", ("tokens_spatial",)),
        ("memories_spatial", ("memories_spatial",)),
    ),
    masking=("tokens_spatial", "tokens_grounding"),
    spatial_queries="sampled",
    memory="split",
    per_object_prompts=True,
    empty_prompt_value=-1.0,
)

V0 = AttentionLayout(
    name="v0",
    cross=V1.cross,
    self_attention=V1.self_attention,
    masking=V1.masking,
    spatial_queries="all",
    memory="shared",
    per_object_prompts=False,
    empty_prompt_value=0.0,
)

DEMO = AttentionLayout(
    name="demo",
    cross=("queries_object",),
    self_attention=(
        (
            "queries_object",
            ("queries_object", "tokens_grounding", "tokens_spatial", "tokens_visual"),
        ),
        ("tokens_grounding", ("queries_object", "tokens_grounding")),
        ("tokens_spatial", ("tokens_spatial",)),
        ("tokens_visual", ("tokens_visual",)),
    ),
    masking=("tokens_spatial", "tokens_grounding", "tokens_visual"),
    spatial_queries="none",
    memory="none",
    per_object_prompts=False,
    empty_prompt_value=0.0,
)

LAYOUTS = {layout.name: layout for layout in (V1, V0, DEMO)}
"""The inference modes (``SeemModel.set_mode``)."""


def spatial_reads_text(layout: AttentionLayout) -> AttentionLayout:
    """``layout`` with ``tokens_grounding`` added to what ``queries_spatial`` may attend in self-attention.

    This is the official ``hook_opt`` for ``STROKE_SAMPLER.EVAL.GROUNDING`` (click + class-name text,
    ``evaluate_interactive_grounding``): only the spatial queries' row changes, so the text tokens and
    grounding queries evolve exactly as in plain grounding, and the spatial queries of every prompt
    object read the same text (v1 keeps objects apart only among spatial tokens and memories). The
    demo layout has no spatial queries (its object queries already read every prompt): returned as is.
    """
    spatial_row = dict(layout.self_attention).get("queries_spatial", ("tokens_grounding",))
    if layout.spatial_queries == "none" or "tokens_grounding" in spatial_row:
        return layout  # nothing to add (demo, or already grounded)
    rows = tuple(
        (group, targets + ("tokens_grounding",) if group == "queries_spatial" else targets)
        for group, targets in layout.self_attention
    )
    return replace(layout, name=f"{layout.name}_grounded", self_attention=rows)


V1_GROUNDED = spatial_reads_text(V1)
V0_GROUNDED = spatial_reads_text(V0)
ALL_LAYOUTS = {layout.name: layout for layout in (V1, V0, DEMO, V1_GROUNDED, V0_GROUNDED)}


@dataclass
class TokenGroup:
    """One group of decoder tokens for a batch.

    ``content``/``pos``: ``[n, B, C]``. ``padding``: bool ``[B, n]`` (True = padded) or None.
    ``object_index``: long ``[B, n]`` prompt object each token belongs to (-1 = padding), or None.
    """

    content: torch.Tensor
    pos: torch.Tensor
    padding: torch.Tensor | None = None
    object_index: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.content.shape[0]


def group_slices(order: tuple[str, ...], groups: dict[str, TokenGroup]) -> dict[str, slice]:
    """Row ranges of the present groups when concatenated in ``order``."""
    slices, start = {}, 0
    for name in order:
        if name in groups:
            slices[name] = slice(start, start + len(groups[name]))
            start += len(groups[name])
    return slices


def self_attention_allowed(layout: AttentionLayout, groups: dict[str, TokenGroup]) -> torch.Tensor:
    """Bool ``[B, S, S]``: True where row token may attend column token, S = all self-attention tokens."""
    slices = group_slices(layout.self_order, groups)
    any_group = next(iter(groups.values()))
    batch, size = any_group.content.shape[1], sum(len(groups[n]) for n in slices)
    allowed = torch.zeros(batch, size, size, dtype=torch.bool, device=any_group.content.device)
    pairs = [(k1, k2) for k1, targets in layout.self_attention for k2 in targets if k1 in slices and k2 in slices]
    for k1, k2 in pairs:
        allowed[:, slices[k1], slices[k2]] = True
    _mask_padding(layout, groups, slices, pairs, allowed)
    if layout.per_object_prompts:
        _restrict_to_own_object(groups, slices, allowed)
    return allowed


def _mask_padding(layout, groups, slices, pairs, allowed: torch.Tensor) -> None:
    """Padded tokens neither attend nor are attended, within their group and across groups."""

    def padding(name: str) -> torch.Tensor | None:
        return groups[name].padding if name in layout.masking and name in slices else None

    for name in layout.masking:
        pad = padding(name)
        if pad is not None:
            block = allowed[:, slices[name], slices[name]]
            block.masked_fill_(pad[:, :, None] | pad[:, None, :], False)
    for k1, k2 in pairs:
        if k1 == k2:
            continue
        block = allowed[:, slices[k1], slices[k2]]
        if (pad := padding(k1)) is not None:
            block.masked_fill_(pad[:, :, None], False)
        if (pad := padding(k2)) is not None:
            block.masked_fill_(pad[:, None, :], False)


def _restrict_to_own_object(groups, slices, allowed: torch.Tensor) -> None:
    """v1: a spatial query sees only the tokens and memories of its own prompt object."""
    if "queries_spatial" not in slices:
        return

    def same(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a[:, :, None] == b[:, None, :]

    queries = groups["queries_spatial"].object_index
    qs = slices["queries_spatial"]
    if "tokens_spatial" in slices:
        tokens = groups["tokens_spatial"].object_index
        ts = slices["tokens_spatial"]
        allowed[:, qs, qs] = same(queries, queries)
        allowed[:, qs, ts] = same(queries, tokens)
        # Padded tokens (index -1) end up attending each other; harmless, they are never read.
        allowed[:, ts, ts] = same(tokens, tokens)
    if "memories_spatial" in slices:
        memories = groups["memories_spatial"].object_index
        ms = slices["memories_spatial"]
        allowed[:, qs, ms] = same(queries, memories)
        allowed[:, ms, ms] = same(memories, memories)
