"""Choosing the answer among decoder queries, and bringing mask logits back to image size.

Selection rules (one per official path):
* v1 visual prompt: for each prompt object, the best of its own spatial queries by
  ``mask_emb . prompt_embedding``.
* v0 visual prompt: the best of all spatial queries against the (single) prompt embedding.
* demo: the best object query against the stroke or reference embedding, or by text similarity.
* text grounding: the query whose class embedding is most similar to the sentence embedding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .decoder import DecoderOutput, Prediction


def select_spatial(output: DecoderOutput, layout_name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pick one mask per prompt object from a visual-prompt decode.

    Returns ``(mask_logits [B, N, h, w], query_index [B, N], selection_logits [B, Q, N])``; in the
    demo layout the candidates are the object queries, else the spatial queries.
    """
    if output.spatial is None:
        raise ValueError("this decode had no visual prompt")
    group = "queries_object" if layout_name == "demo" else "queries_spatial"
    return select_by_embedding(output.final[group], output.spatial.pos_embedding, per_object=layout_name == "v1")


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
    num_queries, num_classes = class_logits.shape[0], class_logits.shape[1] - 1
    probs = class_logits.softmax(-1)[:, :-1].flatten()
    scores, flat = probs.topk(min(top_k, probs.numel()))
    classes = flat % num_classes
    queries = flat // num_classes
    if thing_classes is not None:
        keep = torch.tensor([int(c) in thing_classes for c in classes], dtype=torch.bool)
        scores, classes, queries = scores[keep], classes[keep], queries[keep]
    logits = mask_logits[queries]
    masks = logits > 0
    fg = (logits.sigmoid() * masks).flatten(1).sum(1) / (masks.flatten(1).sum(1) + 1e-6)
    scores = scores * fg
    order = scores.argsort(descending=True)
    return scores[order], classes[order], masks[order]


def panoptic_segments(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    object_threshold: float = 0.8,
    overlap_threshold: float = 0.8,
) -> tuple[torch.Tensor, list[dict]]:
    """Non-overlapping segments: ``([H, W] int32 ids, 1..n; 0 = void), [{id, category_id, score}]``.

    Queries whose best class is not background and whose probability exceeds ``object_threshold``
    compete per pixel by ``score * sigmoid``; a segment survives if it keeps at least
    ``overlap_threshold`` of its own foreground (sigmoid >= 0.5).
    """
    scores, labels = class_logits.softmax(-1).max(-1)
    num_classes = class_logits.shape[-1] - 1
    keep = (labels != num_classes) & (scores > object_threshold)
    height, width = mask_logits.shape[-2:]
    panoptic = torch.zeros(height, width, dtype=torch.int32)
    segments: list[dict] = []
    if not bool(keep.any()):
        return panoptic, segments
    probs = mask_logits[keep].sigmoid()
    kept_scores, kept_labels = scores[keep], labels[keep]
    winner = (kept_scores[:, None, None] * probs).argmax(0)
    for k in range(probs.shape[0]):
        own = probs[k] >= 0.5
        mask = (winner == k) & own
        area, orig = int(mask.sum()), int(own.sum())
        if area == 0 or orig == 0 or (winner == k).sum() == 0 or area / orig < overlap_threshold:
            continue
        segment_id = len(segments) + 1
        panoptic[mask] = segment_id
        segments.append({"id": segment_id, "category_id": int(kept_labels[k]), "score": float(kept_scores[k])})
    return panoptic, segments
