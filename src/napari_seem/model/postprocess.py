"""Choosing the answer among decoder queries, and bringing mask logits back to image size.

Selection rules (one per official path):
* v1 visual prompt: for each prompt object, the best of its own spatial queries by
  ``mask_emb . prompt_embedding``.
* v0 visual prompt: the best of all spatial queries against the (single) prompt embedding.
* demo: the best object query against the stroke or reference embedding, or by text similarity.
* text grounding: the query whose class embedding is most similar to the sentence embedding.
* box prompt (ours, not official): among an object's candidate queries, the best combination of
  the embedding match and how well the candidate's mask fits the box (:func:`select_box_aware`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .decoder import DecoderOutput, Prediction
from .layout import ALL_LAYOUTS, AttentionLayout

BoxYX = tuple[float, float, float, float]
"""``(y0, x0, y1, x1)``: inclusive pixel corners, y0 <= y1 and x0 <= x1."""


def select_spatial(
    output: DecoderOutput, layout: str | AttentionLayout
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pick one mask per prompt object from a visual-prompt decode made with ``layout`` (or its name).

    Returns ``(mask_logits [B, N, h, w], query_index [B, N], selection_logits [B, Q, N])``; in the
    demo layout the candidates are the object queries, else the spatial queries.
    """
    if output.spatial is None:
        raise ValueError("this decode had no visual prompt")
    if isinstance(layout, str):
        if layout not in ALL_LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; known: {', '.join(ALL_LAYOUTS)}")
        layout = ALL_LAYOUTS[layout]
    group = "queries_spatial" if layout.spatial_queries != "none" else "queries_object"
    return select_by_embedding(output.final[group], output.spatial.pos_embedding, per_object=layout.per_object_prompts)


def select_by_embedding(
    pred: Prediction, prompt_embedding: torch.Tensor, per_object: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Argmax over queries of ``mask_emb [B, Q, C] . prompt_embedding [B, N, C]``.

    ``per_object``: query q may answer only prompt object ``q // (Q / N)`` (v1's 3 queries per object).
    """
    logits = pred.mask_emb @ prompt_embedding.transpose(1, 2)  # [B, Q, N]
    batch, num_queries, num_objects = logits.shape
    if per_object:
        owner = torch.arange(num_queries, device=logits.device) // (num_queries // num_objects)
        foreign = owner[:, None] != torch.arange(num_objects, device=logits.device)[None, :]
        logits = logits.masked_fill(foreign[None], float("-inf"))
    index = logits.argmax(dim=1)  # [B, N]
    masks = torch.stack([pred.masks[b, index[b]] for b in range(batch)])
    return masks, index, logits


def expand_box(box: BoxYX, margin: float, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """``box`` grown on each side by ``margin`` times its height/width, rounded outward to whole
    pixels and clipped to an image of ``shape`` (H, W): inclusive ``(y0, x0, y1, x1)``."""
    y0, x0, y1, x1 = box
    dy, dx = margin * (y1 - y0 + 1), margin * (x1 - x0 + 1)
    return (
        max(math.floor(y0 - dy), 0),
        max(math.floor(x0 - dx), 0),
        min(math.ceil(y1 + dy), shape[0] - 1),
        min(math.ceil(x1 + dx), shape[1] - 1),
    )


def box_fit(masks: torch.Tensor, box: BoxYX, margin: float = 0.1) -> torch.Tensor:
    """How well each bool mask ``[K, H, W]`` fits ``box``: ``[K]`` in 0..1 (0 for an empty mask).

    ``fit = IoU(bounding box of the mask inside the allowed region, box) * (share of the mask inside
    the allowed region)``, where the allowed region is the box grown by ``margin`` (see
    :func:`expand_box`). The first factor asks for the right extent (an object touches its box on
    all four sides, whatever its shape: a thin diagonal object fits as well as a round one); the
    second penalises masks that spill far outside the box (background, a neighbouring cluster),
    whose stray pixels the first factor ignores.
    """
    y0, x0, y1, x1 = expand_box(box, margin, masks.shape[-2:])
    inside = masks[:, y0 : y1 + 1, x0 : x1 + 1]
    total = masks.flatten(1).sum(1).float()
    kept = inside.flatten(1).sum(1).float()
    rows, cols = inside.any(2), inside.any(1)  # [K, h], [K, w]
    fits = torch.zeros(masks.shape[0], device=masks.device)
    for k in range(masks.shape[0]):
        if kept[k] == 0:
            continue
        ys, xs = rows[k].nonzero().flatten(), cols[k].nonzero().flatten()
        extent = (y0 + float(ys[0]), x0 + float(xs[0]), y0 + float(ys[-1]), x0 + float(xs[-1]))
        fits[k] = _box_iou(extent, box) * kept[k] / total[k]
    return fits


def _box_iou(a: BoxYX, b: BoxYX) -> float:
    """IoU of two boxes of inclusive pixel corners."""
    h = min(a[2], b[2]) - max(a[0], b[0]) + 1
    w = min(a[3], b[3]) - max(a[1], b[1]) + 1
    inter = max(h, 0.0) * max(w, 0.0)
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def select_box_aware(
    mask_logits: torch.Tensor,
    match: torch.Tensor,
    box: BoxYX,
    box_weight: float = 0.5,
    margin: float = 0.1,
) -> tuple[int, torch.Tensor]:
    """Choose one of K candidate masks for an object prompted with ``box``.

    ``mask_logits [K, H, W]``: the candidates' logits at the resolution of ``box`` (mask = logit > 0).
    ``match [K]``: their embedding match (``mask_emb . prompt_embedding``, the official selection
    logit). Returns ``(index, scores [K])`` with

        score = (1 - box_weight) * minmax(match) + box_weight * box_fit(mask, box, margin)

    ``minmax`` rescales the match to 0..1 across the candidates (the raw dot products have no fixed
    scale; a softmax of them is often one-hot and would silence the box). ``box_weight=0`` is the
    plain embedding selection; ties go to the first candidate, so the result is deterministic.
    """
    if mask_logits.dim() != 3 or match.shape != mask_logits.shape[:1] or match.numel() == 0:
        raise ValueError(f"expected K >= 1 candidates: mask_logits [K, H, W] and match [K], got "
                         f"{tuple(mask_logits.shape)} and {tuple(match.shape)}")
    if not 0.0 <= box_weight <= 1.0:
        raise ValueError(f"box_weight must be in [0, 1], got {box_weight}")
    match = match.float()
    span = match.max() - match.min()
    normalised = (match - match.min()) / span if span > 0 else torch.zeros_like(match)
    scores = (1.0 - box_weight) * normalised + box_weight * box_fit(mask_logits > 0, box, margin)
    return int(scores.argmax()), scores


def grounding_similarity(class_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """``min(exp(logit_scale), 100) * cos``: ``[Q, C] x [n, C] -> [Q, n]`` (official ``vl_similarity``)."""
    scale = torch.clamp(logit_scale.exp(), max=100)
    return scale * F.normalize(class_emb, dim=-1) @ F.normalize(text_emb, dim=-1).t()


def resize_mask_logits(
    logits: torch.Tensor,
    padded_size: tuple[int, int],
    image_size: tuple[int, int],
    output_size: tuple[int, int] | None = None,
    mode: str = "bilinear",
) -> torch.Tensor:
    """``[B, N, h, w]`` logits -> ``mode`` upsample to the padded size, crop to the image, and (if
    ``output_size`` differs) resize again: bicubic with antialias for ``mode="bilinear"`` (the official
    ``sem_seg_postprocess``) or ``mode`` itself otherwise (``evaluate_interactive_single`` uses bicubic twice)."""
    up = F.interpolate(logits, size=padded_size, mode=mode, align_corners=False)
    up = up[..., : image_size[0], : image_size[1]]
    if output_size is None or tuple(output_size) == tuple(image_size):
        return up
    if mode == "bilinear":
        return F.interpolate(up, size=output_size, mode="bicubic", align_corners=False, antialias=True)
    return F.interpolate(up, size=output_size, mode=mode, align_corners=False)


def semantic_maps(class_logits: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """Per-class probability maps: ``[Q, K+1]``, ``[Q, H, W]`` -> ``[K, H, W]``."""
    probs = class_logits.softmax(-1)[:, :-1]
    return torch.einsum("qc,qhw->chw", probs, mask_logits.sigmoid())


def instance_results(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    thing_classes: set[int] | None = None,
    top_k: int = 100,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k (query, class) pairs as instances: returns ``scores [n]``, ``classes [n]``, ``masks [n, H, W]``.

    The score is the class probability times the mean foreground probability inside the mask (the
    official instance inference); with ``thing_classes`` only those classes are kept. Sorted by score.
    """
    num_classes = class_logits.shape[1] - 1
    probs = class_logits.softmax(-1)[:, :-1].flatten()
    scores, flat = probs.topk(min(top_k, probs.numel()))
    classes = flat % num_classes
    queries = flat // num_classes
    if thing_classes is not None:
        keep = torch.tensor([int(c) in thing_classes for c in classes], dtype=torch.bool, device=classes.device)
        scores, classes, queries = scores[keep], classes[keep], queries[keep]
    logits = mask_logits[queries]
    masks = logits > 0
    fg = (logits.sigmoid() * masks).flatten(1).sum(1) / (masks.flatten(1).sum(1) + 1e-6)
    scores = scores * fg
    order = scores.argsort(descending=True)
    return scores[order], classes[order], masks[order]


def confident_queries(
    class_logits: torch.Tensor, object_threshold: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries that name an object with confidence: ``class_logits [Q, K+1]`` -> ``(query_index [n],
    score [n], label [n])`` for queries whose best class is not background (index K) and whose
    probability exceeds ``object_threshold`` (official panoptic step 6.2)."""
    scores, labels = class_logits.softmax(-1).max(-1)
    num_classes = class_logits.shape[-1] - 1
    keep = (labels != num_classes) & (scores > object_threshold)
    index = keep.nonzero().flatten()
    return index, scores[index], labels[index]


def assign_segments(
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask_logits: torch.Tensor,
    overlap_threshold: float = 0.8,
    mask_threshold: float = 0.5,
    query_index: torch.Tensor | None = None,
) -> tuple[torch.Tensor, list[dict]]:
    """Non-overlapping segments from already-kept queries (official panoptic steps 6.3-6.6, all "things").

    ``scores``/``labels`` ``[n]`` and ``mask_logits [n, H, W]`` of the kept queries. Every pixel goes to
    the query with the largest ``score * sigmoid``; query k becomes a segment made of the pixels it won
    where ``sigmoid >= mask_threshold``, if that keeps at least ``overlap_threshold`` of its own
    foreground. Returns ``([H, W] int32 ids 1..m, 0 = void), [{id, category_id, score, query}]``
    (``query`` = ``query_index[k]``, or k without it).
    """
    height, width = mask_logits.shape[-2:]
    panoptic = torch.zeros(height, width, dtype=torch.int32, device=mask_logits.device)
    segments: list[dict] = []
    if scores.numel() == 0:
        return panoptic, segments
    probs = mask_logits.sigmoid()
    winner = (scores[:, None, None] * probs).argmax(0)
    for k in range(probs.shape[0]):
        own = probs[k] >= mask_threshold
        mask = (winner == k) & own
        area, orig = int(mask.sum()), int(own.sum())
        if area == 0 or orig == 0 or area / orig < overlap_threshold:
            continue
        segment_id = len(segments) + 1
        panoptic[mask] = segment_id
        query = int(query_index[k]) if query_index is not None else k
        segments.append({"id": segment_id, "category_id": int(labels[k]), "score": float(scores[k]), "query": query})
    return panoptic, segments


def panoptic_segments(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    object_threshold: float = 0.8,
    overlap_threshold: float = 0.8,
    mask_threshold: float = 0.5,
) -> tuple[torch.Tensor, list[dict]]:
    """Non-overlapping segments: ``([H, W] int32 ids, 1..n; 0 = void), [{id, category_id, score, query}]``.

    ``class_logits [Q, K+1]``, ``mask_logits [Q, H, W]``. Queries whose best class is not background
    and whose probability exceeds ``object_threshold`` compete per pixel by ``score * sigmoid``; a
    segment survives if it keeps at least ``overlap_threshold`` of its own foreground
    (sigmoid >= ``mask_threshold``). See :func:`confident_queries` and :func:`assign_segments`.
    """
    index, scores, labels = confident_queries(class_logits, object_threshold)
    return assign_segments(scores, labels, mask_logits[index], overlap_threshold, mask_threshold, index)
