"""SEEM's language encoder: a causal CLIP-style text transformer plus a projection.

State-dict keys (relative to ``sem_seg_head.predictor.lang_encoder.``) match the official
checkpoints: ``lang_encoder.{token_embedding.weight, positional_embedding, resblocks.{i}.*,
ln_final.*}``, ``lang_proj`` and ``logit_scale``. The causal mask and the tokenizer carry no
state and are not part of the state dict.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
from torch import nn

from .prompt_templates import PROMPT_TEMPLATES, clean_class_name
from .tokenizer import default_tokenizer


class LayerNorm(nn.Module):
    """TF-style LayerNorm (eps inside the square root), computed in float32.

    Written out rather than ``nn.LayerNorm`` to follow the official op order exactly.
    Input/output ``[..., width]``; output dtype = input dtype.
    """

    def __init__(self, width: int, eps: float = 1e-12) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.zeros(width))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        mean = x.mean(-1, keepdim=True)
        var = (x - mean).pow(2).mean(-1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight * x.to(dtype) + self.bias


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``, the GELU approximation CLIP was trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    """Pre-LN block: ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``. Sequence-first ``[L, n, width]``."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        # Sequence-first (batch_first=False) like the official module, so the same
        # (non-fused) attention path runs.
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                [
                    ("c_fc", nn.Linear(width, width * 4)),
                    ("gelu", QuickGELU()),
                    ("c_proj", nn.Linear(width * 4, width)),
                ]
            )
        )
        self.ln_2 = LayerNorm(width)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        """``x`` ``[L, n, width]``, ``attn_mask`` additive ``[L, L]`` -> ``[L, n, width]``."""
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=attn_mask)[0]
        return x + self.mlp(self.ln_2(x))


def causal_mask(length: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Additive ``[length, length]`` mask: 0 on/below the diagonal, -inf above."""
    return torch.full((length, length), float("-inf"), device=device, dtype=dtype).triu_(1)


class TextTransformer(nn.Module):
    """Token + position embedding, causal pre-LN transformer, final LayerNorm.

    No key-padding mask: with a causal mask, padding after EOS cannot change real tokens.
    """

    def __init__(self, vocab_size: int, context_length: int, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.context_length = context_length
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, width))
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))
        self.ln_final = LayerNorm(width)
        self._init_weights()

    def _init_weights(self) -> None:
        # Same distributions as the official init (trunc-normal std 0.02, zero biases).
        nn.init.trunc_normal_(self.token_embedding.weight, std=0.02)
        nn.init.trunc_normal_(self.positional_embedding, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``input_ids`` ``[n, L]`` (L <= context_length) -> last hidden state ``[n, L, width]``."""
        length = input_ids.shape[1]
        if length > self.context_length:
            raise ValueError(f"sequence length {length} > context length {self.context_length}")
        x = self.token_embedding(input_ids) + self.positional_embedding[:length]
        mask = causal_mask(length, x.device, x.dtype)
        x = x.permute(1, 0, 2)  # [n, L, D] -> [L, n, D]
        for block in self.resblocks:
            x = block(x, mask)
        return self.ln_final(x.permute(1, 0, 2))


class LanguageEncoder(nn.Module):
    """SEEM text tower: CLIP tokenizer -> ``TextTransformer`` -> ``@ lang_proj``.

    Focal-T v1 config: ``vocab_size=49408, context_length=77, width=512, layers=12, heads=8,
    proj_dim=512``. The tokenizer is a process-wide shared instance, not a submodule.
    """

    def __init__(
        self,
        vocab_size: int = 49408,
        context_length: int = 77,
        width: int = 512,
        layers: int = 12,
        heads: int = 8,
        proj_dim: int = 512,
    ) -> None:
        super().__init__()
        self.context_length = context_length
        self.lang_encoder = TextTransformer(vocab_size, context_length, width, layers, heads)
        self.lang_proj = nn.Parameter(torch.empty(width, proj_dim))
        nn.init.trunc_normal_(self.lang_proj, std=0.02)
        # Used as exp(logit_scale); the official init is 1 (the checkpoint has the trained value).
        self.logit_scale = nn.Parameter(torch.ones([]))

    @property
    def tokenizer(self):
        """The shared :class:`~napari_seem.model.tokenizer.ClipTokenizer` (loaded on first use)."""
        return default_tokenizer()

    def _device(self) -> torch.device:
        return self.lang_proj.device

    # ------------------------------------------------------------ core

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids, attention_mask)``, both long ``[n, context_length]``, on the module's device."""
        ids, mask = self.tokenizer(list(texts), context_length=self.context_length)
        vocab = self.lang_encoder.token_embedding.num_embeddings
        if int(ids.max()) >= vocab:
            raise ValueError(f"token id {int(ids.max())} outside the embedding table ({vocab} rows)")
        return ids.to(self._device()), mask.to(self._device())

    def encode_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``input_ids`` long ``[n, L]`` -> last hidden state ``[n, L, width]`` (after ``ln_final``)."""
        return self.lang_encoder(input_ids.to(self._device()))

    @staticmethod
    def _eos_rows(hidden: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """``hidden[i, argmax(input_ids[i])]`` ``[n, width]``: EOS has the largest id, and argmax
        returns its first occurrence, i.e. the real EOS and not the padding."""
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return hidden[rows, input_ids.argmax(dim=-1)]

    def sentence_embeddings(self, texts: Sequence[str], normalize: bool = True) -> torch.Tensor:
        """EOS embedding of each text, projected: ``[n, proj_dim]``.

        With ``normalize``, each row is divided by ``(norm + 1e-7)`` (official ``forward_language``).
        """
        input_ids, _ = self.tokenize(texts)
        # The mask is causal, so nothing after the last EOS can change an EOS state: drop that
        # padding (prompts are ~10 of 77 tokens; this is several times faster, same result).
        length = int(input_ids.argmax(dim=-1).max()) + 1
        input_ids = input_ids[:, :length]
        x = self._eos_rows(self.encode_ids(input_ids), input_ids) @ self.lang_proj
        if normalize:
            x = x / (x.norm(dim=-1, keepdim=True) + 1e-7)
        return x

    # ------------------------------------------------------------ SEEM entry points

    def token_embeddings(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Per-token and sentence embeddings (official ``get_text_token_embeddings(norm=False)``).

        Returns a dict with
        ``token_emb`` ``[n, context_length, proj_dim]`` (every hidden state @ lang_proj, not normalised),
        ``class_emb`` ``[n, proj_dim]`` (the EOS hidden state @ lang_proj),
        ``input_ids`` / ``attention_mask`` long ``[n, context_length]``.
        """
        input_ids, attention_mask = self.tokenize(texts)
        hidden = self.encode_ids(input_ids)
        # Project the EOS row separately (as the official code does) rather than slicing
        # token_emb, to follow its arithmetic.
        class_emb = self._eos_rows(hidden, input_ids) @ self.lang_proj
        token_emb = hidden @ self.lang_proj
        return {
            "token_emb": token_emb,
            "class_emb": class_emb,
            "input_ids": input_ids,
            "attention_mask": attention_mask,
        }

    def grounding_tokens(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Text-grounding prompt tokens.

        Returns ``tokens`` ``[T, 1, proj_dim]``: the embeddings of BOS, words and EOS of all texts,
        concatenated in order (``T`` = total attention-mask sum), and ``class_emb`` ``[n, proj_dim]``.
        """
        out = self.token_embeddings(texts)
        tokens = out["token_emb"][out["attention_mask"].bool()]
        return tokens[:, None, :], out["class_emb"]

    def class_embeddings(
        self,
        names: Sequence[str],
        templates: bool | Sequence[str] = True,
        batch_size: int = 256,
    ) -> torch.Tensor:
        """L2-normalised class embeddings ``[K, proj_dim]`` for ``K`` class names.

        ``templates=True``: each cleaned name (see ``clean_class_name``) is put into the 81 SEEM
        prompt templates (or the given sequence of ``'{}'`` templates); each prompt's EOS embedding
        is normalised with ``x / (norm + 1e-7)``, the prompts are averaged and the mean is divided by
        its norm. ``templates=False``: the name itself, unchanged (the official non-prompt path does
        not clean names), normalised the same way. Prompts are encoded ``batch_size`` at a time.
        """
        groups = self._prompt_groups(names, templates)
        flat = [text for group in groups for text in group]
        chunks = [
            self.sentence_embeddings(flat[i : i + batch_size]) for i in range(0, len(flat), batch_size)
        ]
        per_prompt = torch.cat(chunks, dim=0)  # [sum of group sizes, proj_dim]
        means = [g.mean(dim=0) for g in per_prompt.split([len(g) for g in groups], dim=0)]
        return torch.stack([m / m.norm() for m in means], dim=0)

    @staticmethod
    def _prompt_groups(names: Sequence[str], templates: bool | Sequence[str]) -> list[list[str]]:
        """The list of prompts to average for each name."""
        if templates is False:
            return [[name] for name in names]
        chosen = PROMPT_TEMPLATES if templates is True else tuple(templates)
        return [[t.format(clean_class_name(name)) for t in chosen] for name in names]
