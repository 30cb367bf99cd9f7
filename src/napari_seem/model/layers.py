"""Transformer building blocks of the SEEM decoder (post-norm, dropout-free inference versions).

Parameter names follow ``nn.MultiheadAttention`` (``in_proj_weight``, ``in_proj_bias``, ``out_proj``) so
the official checkpoints load, but the forward is ours: it takes a boolean *allowed* mask and gives
all-zero attention to a query that may attend nothing (the official decoder's ``nan_to_num`` rule).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear``, computed as ``(weight @ x^T)^T`` for 2-6 rows in CPU inference.

    A prompt's few queries reach the decoder's linear layers as 2-6 rows. MKL's matrix product for
    so few rows reads the weight at ~6 GB/s, while the transposed product runs 1.5-4.8x faster
    (measured on this project's CPU, 512x512 and 512x2048 weights, 2 threads); one row and seven or
    more are best left to ``F.linear``. The results agree to fp32 rounding.
    """
    rows = x.numel() // x.shape[-1] if x.numel() else 0
    if not 2 <= rows <= 6 or x.device.type != "cpu" or (
        torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    ):
        return F.linear(x, weight, bias)
    flat = x.reshape(rows, x.shape[-1])
    out = weight @ flat.t() if bias is None else torch.addmm(bias[:, None], weight, flat.t())
    return out.t().contiguous().view(*x.shape[:-1], weight.shape[0])


class Linear(nn.Linear):
    """``nn.Linear`` (same keys) whose forward is :func:`linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


class MultiheadAttention(nn.Module):
    """Multi-head attention on sequence-first tensors ``[L, B, C]``."""

    def __init__(self, embed_dim: int, num_heads: int) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim))
        self.out_proj = Linear(embed_dim, embed_dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def project(self, x: torch.Tensor, which: int) -> torch.Tensor:
        """Apply the q (0), k (1) or v (2) input projection: ``[L, B, C] -> [B, heads, L, C/heads]``."""
        c = self.embed_dim
        w = self.in_proj_weight[which * c : (which + 1) * c]
        b = self.in_proj_bias[which * c : (which + 1) * c]
        length, batch, _ = x.shape
        y = linear(x, w, b)
        return y.view(length, batch, self.num_heads, c // self.num_heads).permute(1, 2, 0, 3)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        allowed: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend ``query [Lq,B,C]`` to ``key/value [Lk,B,C]``.

        ``allowed``: bool ``[B, Lq, Lk]`` or ``[B, heads, Lq, Lk]``; True where attention is allowed.
        A query row with nothing allowed gets zero attention, so its output is ``out_proj.bias``.
        Returns ``[Lq, B, C]``.
        """
        q = self.project(query, 0)
        k = self.project(key, 1)
        v = self.project(value, 2)
        return self.attend_projected(q, k, v, allowed)

    def attend_projected(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor | None
    ) -> torch.Tensor:
        """Attention on already projected ``q [B,h,Lq,d]``, ``k/v [B,h,Lk,d]``; returns ``[Lq, B, C]``."""
        batch, heads, length, head_dim = q.shape
        empty_rows = None
        if allowed is not None:
            if allowed.dim() == 3:
                allowed = allowed[:, None]
            empty_rows = ~allowed.any(dim=-1, keepdim=True)  # [B, h|1, Lq, 1]
            if bool(empty_rows.any()):
                # Let empty rows attend everywhere (finite softmax), then zero their output below.
                allowed = allowed | empty_rows
            else:
                empty_rows = None
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        if empty_rows is not None:
            out = out.masked_fill(empty_rows, 0.0)
        out = out.permute(2, 0, 1, 3).reshape(length, batch, heads * head_dim)
        return self.out_proj(out)


class SelfAttentionLayer(nn.Module):
    """``norm(x + SA(q=k=x+pos, v=x))``."""

    def __init__(self, d_model: int, nhead: int) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
        qk = x + pos
        return self.norm(x + self.self_attn(qk, qk, x, allowed))


class CrossAttentionLayer(nn.Module):
    """``norm(x + CA(q=x+query_pos, k=memory+pos, v=memory))``."""

    def __init__(self, d_model: int, nhead: int) -> None:
        super().__init__()
        self.multihead_attn = MultiheadAttention(d_model, nhead)
        self.norm = nn.LayerNorm(d_model)

    def forward(
        self,
        x: torch.Tensor,
        query_pos: torch.Tensor,
        memory_keys: torch.Tensor,
        memory_values: torch.Tensor,
        allowed: torch.Tensor | None,
    ) -> torch.Tensor:
        """``memory_keys``/``memory_values`` are the projected image features ``[B, h, HW, d]``
        (see :meth:`project_memory`), computed once per image and level."""
        q = self.multihead_attn.project(x + query_pos, 0)
        out = self.multihead_attn.attend_projected(q, memory_keys, memory_values, allowed)
        return self.norm(x + out)

    def project_memory(self, memory: torch.Tensor, memory_with_pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Key/value projections of image features ``memory [HW,B,C]`` (keys from ``memory + pos``);
        they do not depend on prompts."""
        attn = self.multihead_attn
        return attn.project(memory_with_pos, 1), attn.project(memory, 2)


class FFNLayer(nn.Module):
    """``norm(x + linear2(relu(linear1(x))))``."""

    def __init__(self, d_model: int, dim_feedforward: int) -> None:
        super().__init__()
        self.linear1 = Linear(d_model, dim_feedforward)
        self.linear2 = Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.linear2(F.relu(self.linear1(x))))


class MLP(nn.Module):
    """Linear layers with ReLU between them (the mask-embedding head)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(Linear(i, o) for i, o in zip(dims_in, dims_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x
