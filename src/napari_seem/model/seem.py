"""The whole SEEM model: FocalNet backbone + pixel decoder (image encoding) and the SEEM decoder.

The two halves are separate on purpose: :meth:`SeemModel.encode` runs once per image and returns
:class:`ImageFeatures` (which include the decoder's prompt-independent projections);
:meth:`SeemModel.decode` runs per prompt round on those features.

Images enter as float ``[B, 3, H, W]`` RGB in 0..255 (the official input); they are normalised with
the ImageNet mean/std in 0..255 units and zero-padded (in normalised space) on the bottom/right to a
multiple of 32. Prompt masks are given at image size ``[N, H, W]`` and padded the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from .config import SeemConfig, get_config
from .decoder import DecoderMemory, DecoderOutput, GroundingPrompt, SeemDecoder
from .focalnet import FocalNet
from .layout import LAYOUTS, AttentionLayout
from .pixel_decoder import TransformerEncoderPixelDecoder
from .visual_sampler import VisualPrompt


@dataclass
class ImageFeatures:
    """One encoded image batch.

    ``backbone``: ``res2..res5`` maps. ``mask_features [B, C, Hp/4, Wp/4]``. ``multi_scale``: decoder
    memory maps at strides 32, 16, 8. ``memory``: the decoder's per-image inputs.
    ``image_size``: (H, W) before padding; ``padded_size``: (Hp, Wp).
    """

    backbone: dict[str, torch.Tensor]
    mask_features: torch.Tensor
    multi_scale: list[torch.Tensor]
    memory: DecoderMemory
    image_size: tuple[int, int]
    padded_size: tuple[int, int]


class SemSegHead(nn.Module):
    """Container that gives the official key prefixes ``sem_seg_head.{pixel_decoder,predictor}``."""

    def __init__(self, pixel_decoder: TransformerEncoderPixelDecoder, predictor: SeemDecoder) -> None:
        super().__init__()
        self.pixel_decoder = pixel_decoder
        self.predictor = predictor


class _Criterion(nn.Module):
    """Holds the training criterion's class weight buffer, which the released checkpoints contain."""

    def __init__(self, num_classes: int, eos_coef: float = 0.1) -> None:
        super().__init__()
        weight = torch.ones(num_classes + 1)
        weight[-1] = eos_coef
        self.register_buffer("empty_weight", weight)


class SeemModel(nn.Module):
    def __init__(self, cfg: SeemConfig) -> None:
        super().__init__()
        self.cfg = cfg
        b = cfg.backbone
        self.backbone = FocalNet(
            embed_dim=b.embed_dim,
            depths=b.depths,
            focal_levels=b.focal_levels,
            focal_windows=b.focal_windows,
            mlp_ratio=b.mlp_ratio,
            variant=b.variant,
        )
        p = cfg.pixel_decoder
        pixel_decoder = TransformerEncoderPixelDecoder(
            in_channels=b.out_channels,
            conv_dim=p.conv_dim,
            mask_dim=p.mask_dim,
            num_encoder_layers=p.encoder_layers,
            nheads=p.nheads,
            dim_feedforward=p.dim_feedforward,
            num_groups=p.norm_groups,
            absolute_position=p.absolute_position,
        )
        predictor = SeemDecoder(cfg.decoder, cfg.text, p.mask_dim)
        self.sem_seg_head = SemSegHead(pixel_decoder, predictor)
        self.register_buffer("dilation_kernel", torch.ones(1, 1, 3, 3))
        self.criterion = _Criterion(cfg.decoder.num_classes_train)
        self.register_buffer("pixel_mean", torch.tensor(cfg.pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(cfg.pixel_std).view(1, 3, 1, 1), persistent=False)

    def set_mode(self, mode: str) -> None:
        """Switch the inference logic (``"v1"``, ``"v0"`` or ``"demo"``); weights are shared by all three."""
        if mode not in LAYOUTS:
            raise ValueError(f"unknown mode {mode!r}; known: {', '.join(LAYOUTS)}")
        self.cfg = self.cfg.with_mode(mode)

    @property
    def predictor(self) -> SeemDecoder:
        return self.sem_seg_head.predictor

    @property
    def layout(self) -> AttentionLayout:
        return LAYOUTS[self.cfg.mode]

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    # ------------------------------------------------------------------ image half
    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        d = self.cfg.size_divisibility
        return (-(-height // d) * d, -(-width // d) * d)

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` RGB 0..255 -> normalised, zero-padded ``[B, 3, Hp, Wp]``."""
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"expected an image batch [B, 3, H, W], got shape {tuple(image.shape)}")
        x = (image.to(self.pixel_mean.dtype) - self.pixel_mean) / self.pixel_std
        hp, wp = self.padded_size(*x.shape[-2:])
        return F.pad(x, (0, wp - x.shape[-1], 0, hp - x.shape[-2]))

    def encode(self, image: torch.Tensor) -> ImageFeatures:
        """Backbone + pixel decoder + decoder memory for ``image [B, 3, H, W]`` (RGB, 0..255)."""
        x = self.preprocess(image.to(self.device))
        backbone = self.backbone(x)
        mask_features, _, multi_scale = self.sem_seg_head.pixel_decoder(backbone)
        memory = self.predictor.prepare_memory(multi_scale, mask_features)
        return ImageFeatures(
            backbone, mask_features, multi_scale, memory, tuple(image.shape[-2:]), tuple(x.shape[-2:])
        )

    # ------------------------------------------------------------------ vocabulary
    def set_vocabulary(self, names: list[str], templates: bool = True) -> torch.Tensor:
        """Class names for classification; ``"background"`` is appended as the no-object class.

        Returns the normalised embeddings ``[K+1, dim_proj]``. With ``templates`` each name is encoded
        through the 81 CLIP prompt templates and averaged (the official evaluation behaviour).
        """
        embeddings = self.predictor.lang_encoder.class_embeddings(list(names) + ["background"], templates=templates)
        self.set_vocabulary_embeddings(embeddings)
        return embeddings

    def set_vocabulary_embeddings(self, embeddings: torch.Tensor | None) -> None:
        """Use precomputed normalised class embeddings ``[K+1, dim_proj]`` (last row = background)."""
        self.predictor.vocabulary_embeddings = None if embeddings is None else embeddings.to(self.device)

    # ------------------------------------------------------------------ prompt half
    def pad_prompt_masks(self, masks: torch.Tensor, features: ImageFeatures) -> torch.Tensor:
        """Bool ``[N, H, W]`` at image size -> ``[N, Hp, Wp]`` zero-padded bottom/right."""
        height, width = features.image_size
        if masks.dim() != 3 or tuple(masks.shape[-2:]) != (height, width):
            raise ValueError(f"prompt masks must be [N, {height}, {width}], got {tuple(masks.shape)}")
        hp, wp = features.padded_size
        return F.pad(masks.to(self.device).bool(), (0, wp - width, 0, hp - height))

    def encode_visual_prompt(
        self,
        features: ImageFeatures,
        pos_masks: torch.Tensor,
        neg_masks: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> VisualPrompt:
        """Visual prompt on one image: ``pos_masks``/``neg_masks`` bool ``[N, H, W]`` at image size
        (object n's positive and negative pixels). Usable on the same image or, as a reference, on
        another image's features."""
        pos = self.pad_prompt_masks(pos_masks, features)
        neg = torch.zeros_like(pos) if neg_masks is None else self.pad_prompt_masks(neg_masks, features)
        if pos.shape[0] != neg.shape[0]:
            raise ValueError(f"{pos.shape[0]} positive but {neg.shape[0]} negative prompt masks")
        if features.mask_features.shape[0] != 1:
            raise ValueError("visual prompts are encoded one image at a time")
        return self.predictor.encode_visual_prompt(features.memory, [pos], [neg], self.layout, generator)

    def grounding_prompt(self, texts: list[str], features: ImageFeatures) -> tuple[GroundingPrompt, torch.Tensor]:
        """Text tokens for ``texts`` and their sentence embeddings ``[n, dim_proj]``."""
        if not texts or any(not t.strip() for t in texts):
            raise ValueError(f"text prompts must be non-empty strings, got {texts!r}")
        return self.predictor.grounding_prompt(list(texts), features.mask_features.shape[0])

    def decode(
        self,
        features: ImageFeatures,
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
        layout: AttentionLayout | None = None,
    ) -> DecoderOutput:
        """Decode ``features`` with any combination of prompts; see :meth:`SeemDecoder.forward`.

        ``layout`` overrides the mode's attention layout for this decode, e.g.
        ``layout.spatial_reads_text(model.layout)`` to let a visual prompt's queries read the text of
        ``grounding`` (text + visual for one object). A visual prompt must have been encoded for a
        layout that treats prompt objects the same way (:meth:`encode_visual_prompt` uses the mode's).
        """
        layout = self.layout if layout is None else layout
        if visual is not None and layout.name != "demo":
            raise ValueError("reference tokens as 'visual' prompts exist only in the demo layout; use 'spatial'")
        if spatial is not None and layout.per_object_prompts != self.layout.per_object_prompts:
            raise ValueError(
                f"layout {layout.name!r} does not match the mode {self.cfg.mode!r} the visual prompt was "
                "encoded for (objects kept apart or merged)"
            )
        if prev_mask is not None:
            prev_mask = prev_mask.to(self.device, self.pixel_mean.dtype)
        return self.predictor(
            features.memory,
            layout,
            spatial=spatial,
            visual=visual,
            grounding=grounding,
            prev_mask=prev_mask,
            spatial_query_indices=spatial_query_indices,
            generator=generator,
            memory_generator=memory_generator,
            include_object_queries=include_object_queries,
            keep_aux=keep_aux,
            keep_query_states=keep_query_states,
        )


def build_seem(variant: str | SeemConfig = "focalt_v1", device: str | torch.device = "cpu") -> SeemModel:
    """Build a SEEM model (random weights) for a preset name or a :class:`SeemConfig`, in eval mode.

    ``device="meta"`` builds it without allocating weights (for checking key sets of large models).
    """
    cfg = get_config(variant)
    with torch.device(device):
        model = SeemModel(cfg)
    return model.eval()


def build_with_weights(
    variant: str | SeemConfig = "focalt_v1", checkpoint: str | None = None, seed: int = 0
) -> tuple[SeemModel, str]:
    """A model with ``checkpoint``'s weights, or random weights (``seed``) when none is given, and a
    plain statement of which weights it has (for reports: random weights segment nothing real).

    The file is read before the model is built: a wrong or damaged file fails at once. A napari-seem
    checkpoint made for another architecture than ``variant`` is loaded with its own (it says so)."""
    torch.manual_seed(seed)
    if not checkpoint:
        return build_seem(variant), f"RANDOM weights (torch seed {seed}): the masks are not a real segmentation"
    from .checkpoint import load_checkpoint, read_checkpoint, trained_config, trained_model_name

    payload = read_checkpoint(checkpoint)
    cfg, own = get_config(variant), trained_config(payload)
    if own is not None and replace(own, mode=cfg.mode) != cfg:  # the mode (decoder logic) is the caller's
        model = load_checkpoint(build_seem(own), {"state_dict": payload["state_dict"]})
        return model, (f"{trained_model_name(payload)} from {checkpoint}, loaded with its own architecture "
                       f"(not {variant if isinstance(variant, str) else 'the one asked for'})")
    return load_checkpoint(build_seem(cfg), payload), f"checkpoint {checkpoint}"

