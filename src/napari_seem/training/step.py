"""One training step of SEEM: the image is encoded once, then generic segmentation (object queries),
interactive segmentation (spatial queries, with simulated prompts over several rounds) and text
grounding (grounding queries) are decoded together and their losses summed.

The three query groups never attend to each other in the v1 layout, so decoding them in one pass is
the same as decoding them apart, and cheaper. Interactive training follows SEEM: a random number
of rounds (1..``max_rounds``); every round but the last runs without gradients, and its selected
mask (the candidate inference would pick) is both the memory prompt (``prev_mask``) of the next
round and the source of the next round's corrective click (the evaluation protocol's click at
the centre of the largest error). Only the last round is supervised.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from napari_seem.evaluation.clicks import next_click
from napari_seem.model import ImageFeatures, SeemModel
from napari_seem.model.decoder import DecoderOutput, GroundingPrompt, Prediction
from napari_seem.model.postprocess import grounding_similarity, select_by_embedding
from napari_seem.model.visual_sampler import VisualPrompt

from .data import Batch
from .losses import (
    LossWeights,
    class_logits,
    downsample_masks,
    generic_loss,
    grounding_loss,
    interactive_loss,
    total,
)
from .pseudo_video import Motion, make_pair, pseudo_video_decode
from .simulate import PROMPT_KINDS, click_mask, simulate_prompt, thin


@dataclass(frozen=True)
class TaskConfig:
    """What a step trains and how. Task weights of 0 switch a task off.

    ``objects_per_image``: most prompted objects per image and step (v1 decodes them together).
    ``single_object_fraction``: share of the steps that prompt one object per image. v1 splits its
    32 memory tokens among the objects of a pass, and a user refines one object at a time: a model
    trained only on several objects per pass sees 4x the memory tokens at inference, and its
    memory then outweighs the corrective clicks.
    ``prompt_kinds``/``prompt_weights``: the first round's prompt, drawn per object.
    ``interactive_stride``: the interactive loss compares logits upsampled to crop size / stride
    (1: the crop's resolution, as inference thresholds the upsampled logits) with the object.
    ``num_points``: generic/grounding mask terms on a random subset of this many 1/4-res pixels
    (None: all). ``templates``: class names go through the 81 CLIP templates, as in inference.
    ``generic_fraction``/``grounding_fraction``: share of the steps that include the task (the
    object and grounding queries add 2 x 101 tokens to every decoder layer: on a CPU, running them
    on some steps only buys more interactive steps). ``prompt_points``: at most this many pixels of
    an object's first prompt (a box, mask or scribble) become prompt points; corrective clicks are
    always kept whole (the decoder's self-attention cost grows with the square of the points).
    ``position_offset``: for models with ``absolute_position``, each step places its crops at a
    random offset of up to this many input pixels, so the positions a crop sees cover those of a
    whole image (512 pixels on the long side at inference).
    ``video_fraction``: share of the steps that are pseudo-video propagation steps instead
    (:mod:`~napari_seem.training.pseudo_video`; interactive loss only), moved by ``motion``.
    """

    generic: float = 1.0
    interactive: float = 1.0
    grounding: float = 0.5
    generic_fraction: float = 1.0
    grounding_fraction: float = 1.0
    objects_per_image: int = 4
    single_object_fraction: float = 0.5
    max_rounds: int = 3
    prompt_kinds: tuple[str, ...] = PROMPT_KINDS
    prompt_weights: tuple[float, ...] = (0.55, 0.15, 0.15, 0.15)
    prompt_points: int | None = 128
    position_offset: float = 256.0
    deep_supervision: bool = True
    interactive_stride: int = 2
    num_points: int | None = 4096
    templates: bool = True
    weights: LossWeights = field(default_factory=LossWeights)
    video_fraction: float = 0.0
    motion: Motion = field(default_factory=Motion)


# ---------------------------------------------------------------------------------------- prompts
class PromptState:
    """The simulated prompts of a batch, per image bool ``[N, S, S]`` numpy arrays (the same N for
    every image, since v1 decodes a batch's objects together): ``targets`` (the objects), ``first``
    (the first round's prompt), ``pos_clicks``/``neg_clicks`` (corrective clicks of later rounds)."""

    def __init__(self, batch: Batch, tasks: TaskConfig, rng: np.random.Generator) -> None:
        counts = [m.shape[0] for m in batch.masks]
        wanted = 1 if rng.random() < tasks.single_object_fraction else tasks.objects_per_image
        self.num_objects = max(1, min(wanted, max(counts)))
        self.max_points = tasks.prompt_points
        self.rng = rng
        weights = np.asarray(tasks.prompt_weights, dtype=float)
        self.targets, self.first, self.pos_clicks, self.neg_clicks = [], [], [], []
        for masks in batch.masks:
            chosen = _choose_objects(masks.shape[0], self.num_objects, rng)
            targets = masks[chosen].cpu().numpy()
            kinds = rng.choice(len(tasks.prompt_kinds), size=len(chosen), p=weights / weights.sum())
            self.targets.append(targets)
            self.first.append(np.stack([simulate_prompt(t, tasks.prompt_kinds[k], rng) for t, k in zip(targets, kinds)]))
            self.pos_clicks.append(np.zeros_like(targets))
            self.neg_clicks.append(np.zeros_like(targets))

    def _thinned(self, first: np.ndarray) -> np.ndarray:
        """``first [N, S, S]`` with at most ``max_points`` random pixels left per object."""
        if self.max_points is None:
            return first
        return np.stack([thin(mask, self.max_points, self.rng) for mask in first])

    def encode(self, model: SeemModel, features: ImageFeatures, generator: torch.Generator) -> VisualPrompt:
        """The visual prompt of the current round on ``features`` (with gradients if enabled)."""
        device = features.mask_features.device
        pos = [torch.from_numpy(self._thinned(f) | c).to(device) for f, c in zip(self.first, self.pos_clicks)]
        neg = [torch.from_numpy(c).to(device) for c in self.neg_clicks]
        return model.predictor.encode_visual_prompt(features.memory, pos, neg, model.layout, generator)

    def add_corrections(self, selected_logits: torch.Tensor) -> None:
        """One corrective click per object from ``selected_logits [B, N, h, w]`` (the masks inference
        would show): positive in the largest miss, negative in the largest false positive."""
        size = self.targets[0].shape[-2:]
        masks = (F.interpolate(selected_logits, size=size, mode="bilinear", align_corners=False) > 0).cpu().numpy()
        for b, targets in enumerate(self.targets):
            for n, target in enumerate(targets):
                click = next_click(masks[b, n], target)
                if click is not None:
                    canvas = self.pos_clicks[b] if click.positive else self.neg_clicks[b]
                    canvas[n] |= click_mask(click, target.shape)


def _choose_objects(available: int, wanted: int, rng: np.random.Generator) -> np.ndarray:
    """``wanted`` object indices of ``available`` (>= 1): distinct while possible, then repeated."""
    if available == 0:
        raise ValueError("an image in the batch has no object to prompt")
    chosen = rng.permutation(available)[:wanted]
    if chosen.size < wanted:
        chosen = np.concatenate([chosen, rng.integers(0, available, wanted - chosen.size)])
    return chosen


# ---------------------------------------------------------------------------------------- text
@dataclass
class TextTargets:
    """Per image: the grounding text's sentence embedding ``[1, C]`` and which of the image's
    instances it names (bool ``[G]``); ``prompt`` batches the text tokens (padded)."""

    prompt: GroundingPrompt
    sentences: list[torch.Tensor]
    named: list[torch.Tensor]


def grounding_targets(model: SeemModel, batch: Batch, rng: np.random.Generator) -> TextTargets:
    """One class present in each image becomes its referring text (the class name itself); the
    grounding loss segments the union of that class's instances."""
    encoder = model.predictor.lang_encoder
    cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    tokens, sentences, named = [], [], []
    for classes, vocabulary in zip(batch.classes, batch.vocabularies):
        present = torch.unique(classes).tolist()
        chosen = int(present[int(rng.integers(len(present)))])
        text = vocabulary[chosen]
        if text not in cache:
            cache[text] = encoder.grounding_tokens([text])
        tokens.append(cache[text][0][:, 0])
        sentences.append(cache[text][1])
        named.append(classes == chosen)
    length = max(t.shape[0] for t in tokens)
    padded = tokens[0].new_zeros((length, len(tokens), tokens[0].shape[-1]))
    padding = torch.ones(len(tokens), length, dtype=torch.bool, device=padded.device)
    for b, t in enumerate(tokens):
        padded[: t.shape[0], b] = t
        padding[b, : t.shape[0]] = False
    return TextTargets(GroundingPrompt(padded, padding), sentences, named)


def vocabulary_embeddings(model: SeemModel, batch: Batch, templates: bool) -> dict[tuple[str, ...], torch.Tensor]:
    """Normalised class embeddings ``[K+1, C]`` (last: "background") of each vocabulary in the batch,
    computed with gradients (the text encoder learns from the class loss)."""
    encoder = model.predictor.lang_encoder
    return {v: encoder.class_embeddings(list(v) + ["background"], templates=templates) for v in set(batch.vocabularies)}


# ---------------------------------------------------------------------------------------- the step
@dataclass
class _StepState:
    """What the losses of one step read: the batch, its soft 1/4-res targets ``[G, h, w]`` per image,
    the prompts (interactive), the text (grounding) and the vocabulary embeddings (generic)."""

    batch: Batch
    soft_targets: list[torch.Tensor]
    prompts: PromptState | None
    text: TextTargets | None
    vocabularies: dict[tuple[str, ...], torch.Tensor]


def training_step(
    model: SeemModel,
    batch: Batch,
    tasks: TaskConfig,
    rng: np.random.Generator,
    generator: torch.Generator,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one batch (to backpropagate) and its parts as floats (final-layer terms)."""
    if not (tasks.generic > 0 or tasks.interactive > 0 or tasks.grounding > 0):
        raise ValueError("every task weight is 0: nothing to train")
    if tasks.video_fraction > 0 and tasks.interactive > 0 and rng.random() < tasks.video_fraction:
        with placed_at(model, _random_offset(model, tasks, rng)):
            result = _video_step(model, batch, tasks, rng, generator)
        if result is not None:
            return result
    generic = tasks.generic > 0 and rng.random() < tasks.generic_fraction
    grounding = tasks.grounding > 0 and rng.random() < tasks.grounding_fraction
    interactive = tasks.interactive > 0
    if not (generic or grounding or interactive):  # the draws skipped every enabled task: run one anyway
        generic = tasks.generic > 0
        grounding = not generic
    with placed_at(model, _random_offset(model, tasks, rng)):
        return _step(model, batch, tasks, rng, generator, generic, grounding, interactive)


def _random_offset(model: SeemModel, tasks: TaskConfig, rng: np.random.Generator) -> tuple[float, float]:
    if not (model.cfg.decoder.absolute_position or model.cfg.pixel_decoder.absolute_position):
        return (0.0, 0.0)
    return (float(rng.uniform(0, tasks.position_offset)), float(rng.uniform(0, tasks.position_offset)))


@contextmanager
def placed_at(model: SeemModel, offset: tuple[float, float]):
    """Encode as if the image's top-left corner sat at input pixel ``offset`` of a larger image
    (absolute-position models: a training crop then sees the positions of its place in an image)."""
    modules = (model.predictor, model.sem_seg_head.pixel_decoder)
    saved = [m.position_offset for m in modules]
    for module in modules:
        module.position_offset = offset
    try:
        yield
    finally:
        for module, value in zip(modules, saved):
            module.position_offset = value


def _step(model, batch, tasks, rng, generator, generic: bool, grounding: bool, interactive: bool):
    """The step itself (see :func:`training_step`)."""
    features = model.encode(batch.images)
    size = tuple(features.mask_features.shape[-2:])
    state = _StepState(
        batch,
        [downsample_masks(m, size) for m in batch.masks] if generic or grounding else [],
        PromptState(batch, tasks, rng) if interactive else None,
        grounding_targets(model, batch, rng) if grounding else None,
        vocabulary_embeddings(model, batch, tasks.templates) if generic else {},
    )
    spatial, prev, indices = None, None, None
    if state.prompts is not None:
        per_prompt = model.cfg.decoder.queries_per_prompt
        count = per_prompt * state.prompts.num_objects
        indices = torch.randint(0, model.cfg.decoder.num_queries, (count,), generator=generator)
        rounds = int(rng.integers(1, tasks.max_rounds + 1))
        prev = _unsupervised_rounds(model, features, state.prompts, indices, rounds, generator)
        spatial = state.prompts.encode(model, features, generator)
    out = model.decode(
        features, spatial=spatial, prev_mask=prev, grounding=None if state.text is None else state.text.prompt,
        spatial_query_indices=indices, include_object_queries=generic, keep_aux=tasks.deep_supervision,
    )
    return _losses(model, out, state, tasks, generator)


def _video_step(model, batch, tasks, rng, generator) -> tuple[torch.Tensor, dict[str, float]] | None:
    """A pseudo-video propagation step (:mod:`~napari_seem.training.pseudo_video`), or ``None`` when
    the motion left an image without an object to prompt."""
    wanted = 1 if rng.random() < tasks.single_object_fraction else tasks.objects_per_image
    num_objects = max(1, min(wanted, max(m.shape[0] for m in batch.masks)))
    pair = make_pair(batch, num_objects, tasks.motion, rng)
    if pair is None:
        return None
    out, _ = pseudo_video_decode(model, pair, num_objects, tasks.prompt_points, rng, generator,
                                       tasks.deep_supervision)
    crop = pair.target_masks[0].shape[-1]
    size = (crop // tasks.interactive_stride, crop // tasks.interactive_stride)
    targets = torch.stack([downsample_masks(torch.from_numpy(t), size).flatten(1) for t in pair.target_masks])
    layers = out.predictions[1:] if tasks.deep_supervision else out.predictions
    loss = torch.zeros((), device=batch.images.device)
    logs: dict[str, float] = {}
    for prediction in layers:
        terms = _interactive(prediction["queries_spatial"], out.spatial, targets)
        loss = loss + total(terms, tasks.weights, tasks.interactive)
    logs.update({f"video/{k}": float(v.detach()) for k, v in terms.items()})
    logs["loss"] = float(loss.detach())
    return loss, logs


def _unsupervised_rounds(
    model: SeemModel, features: ImageFeatures, prompts: PromptState, indices: torch.Tensor, rounds: int, generator
) -> torch.Tensor | None:
    """Rounds 1..rounds-1 without gradients; returns the last one's selected logits (the memory of
    the supervised round), or None for a single round."""
    prev = None
    with torch.no_grad():
        for _ in range(rounds - 1):
            spatial = prompts.encode(model, features, generator)
            out = model.decode(features, spatial=spatial, prev_mask=prev, spatial_query_indices=indices,
                               include_object_queries=False)
            prev, _, _ = select_by_embedding(out.final["queries_spatial"], spatial.pos_embedding, per_object=True)
            prompts.add_corrections(prev)
    return prev


def _losses(
    model: SeemModel, out: DecoderOutput, state: _StepState, tasks: TaskConfig, generator
) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum of the task losses over the supervised layers (all but the learned-query prediction with
    deep supervision, else the final one); the logged parts are the final layer's."""
    layers = out.predictions[1:] if tasks.deep_supervision else out.predictions
    interactive_targets = _interactive_targets(state.prompts, tasks) if state.prompts is not None else None
    loss = torch.zeros((), device=state.batch.images.device)
    logs: dict[str, float] = {}
    for depth, prediction in enumerate(layers):
        parts = {}
        if "queries_object" in prediction:
            parts["generic"] = _generic(model, prediction["queries_object"], state, tasks, generator)
        if "queries_spatial" in prediction:
            parts["interactive"] = _interactive(prediction["queries_spatial"], out.spatial, interactive_targets)
        if "queries_grounding" in prediction:
            parts["grounding"] = _grounding(model, prediction["queries_grounding"], state, tasks, generator)
        for task, terms in parts.items():
            loss = loss + total(terms, tasks.weights, getattr(tasks, task))
            if depth == len(layers) - 1:
                logs.update({f"{task}/{k}": float(v.detach()) for k, v in terms.items()})
    logs["loss"] = float(loss.detach())
    return loss, logs


def _generic(model, pred: Prediction, state: _StepState, tasks: TaskConfig, generator) -> dict[str, torch.Tensor]:
    """Generic loss averaged over the batch: class CE per image, mask terms per matched instance."""
    scale = model.predictor.lang_encoder.logit_scale
    batch, parts = state.batch, []
    for b in range(batch.size):
        logits = class_logits(pred.class_emb[b], state.vocabularies[batch.vocabularies[b]], scale)
        parts.append(generic_loss(pred.masks[b], logits, state.soft_targets[b], batch.classes[b], tasks.weights,
                                  tasks.num_points, generator))
    matched = max(float(sum(p["matched"] for p in parts)), 1.0)
    return {
        "class": torch.stack([p["class"] for p in parts]).mean(),
        "mask": sum(p["mask"] for p in parts) / matched,
        "dice": sum(p["dice"] for p in parts) / matched,
    }


def _interactive_targets(prompts: PromptState, tasks: TaskConfig) -> torch.Tensor:
    """The prompted objects at the interactive loss's resolution: float ``[B, N, s*s]``."""
    crop = prompts.targets[0].shape[-1]
    size = (crop // tasks.interactive_stride, crop // tasks.interactive_stride)
    return torch.stack([downsample_masks(torch.from_numpy(t), size).flatten(1) for t in prompts.targets])


def _interactive(pred: Prediction, spatial: VisualPrompt, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Interactive loss averaged over the prompted objects of the batch (``targets [B, N, s*s]``)."""
    side = int(round(targets.shape[-1] ** 0.5))
    logits = F.interpolate(pred.masks, size=(side, side), mode="bilinear", align_corners=False).flatten(2)
    selection = pred.mask_emb @ spatial.pos_embedding.transpose(1, 2)  # [B, kN, N]
    targets = targets.to(logits.device)
    batch, num_objects = targets.shape[:2]
    per_object = logits.shape[1] // num_objects
    parts = []
    for b in range(batch):
        for n in range(num_objects):
            rows = slice(n * per_object, (n + 1) * per_object)
            parts.append(interactive_loss(logits[b, rows], selection[b, rows, n], targets[b, n]))
    return {k: torch.stack([p[k] for p in parts]).mean() for k in ("mask", "dice", "selection")}


def _grounding(model, pred: Prediction, state: _StepState, tasks: TaskConfig, generator) -> dict[str, torch.Tensor]:
    """Grounding loss averaged over the images of the batch."""
    scale = model.predictor.lang_encoder.logit_scale
    parts = []
    for b, (sentence, named) in enumerate(zip(state.text.sentences, state.text.named)):
        similarity = grounding_similarity(pred.class_emb[b], sentence, scale)[:, 0]
        # A class name names every instance of its class: the text's target is their union (what a
        # user who types "nucleus" expects: all nuclei), not one instance of it.
        union = state.soft_targets[b][named].amax(0, keepdim=True)
        parts.append(grounding_loss(pred.masks[b], similarity, union, tasks.weights, tasks.num_points, generator))
    return {k: torch.stack([p[k] for p in parts]).mean() for k in ("mask", "dice", "selection")}
