"""Relative-position self-attention (Transformer-XL style), its positional encoding and its masks.

Scores for query frame ``i`` and key frame ``j``, per head (``d_h`` = head width)::

    score(i, j) = ((q_i + u) . k_j  +  (q_i + v) . W_pos pe(i - j)) / sqrt(d_h)

``u`` and ``v`` are the learned per-layer biases ``pos_bias_u`` / ``pos_bias_v`` ``(heads, d_h)`` (zero at
initialisation), ``W_pos`` is the bias-free ``linear_pos`` and ``pe(p)`` the sinusoid of the signed distance ``p``.
The second term is computed once per query against the ``2K - 1`` distances ``K-1 ... -(K-1)`` and then skewed into
``(T, K)`` (the "relative shift"); here the skew is a strided view, not a pad-and-reshape copy.

The sum is evaluated with :func:`torch.nn.functional.scaled_dot_product_attention` exactly: the query is ``q + u``,
the float ``attn_mask`` is the scaled position term plus the mask (0 or -inf). ``use_sdpa=False`` evaluates the
same formula with an explicit softmax (the tests check both agree).

Masks (:class:`AttentionContext`, :class:`AttentionMask`): ``att_context_size = (left, right)`` frames, -1 =
unlimited, in two styles:

- ``"regular"``: a band, ``i - left <= j <= i + right``;
- ``"chunked_limited"``: time is cut into chunks of ``right + 1`` frames; a frame sees its whole chunk and the
  ``left // (right + 1)`` chunks before it (``left`` must be a multiple of ``right + 1``), as cache-aware
  streaming models are trained;

plus ``global_tokens = g``: the first ``g`` frames see every frame and every frame sees them (long audio with limited
context), plus key padding. A query past its utterance's length keeps its context but ignores key padding, so no
row is ever empty and no NaN appears; those outputs are padding anyway.

Long inputs with limited left context run blockwise (``AttentionMask.build(..., block_size=...)``): queries in
blocks of ``Q`` frames attend to a window of ``Q + look-back + look-ahead`` keys (plus the global keys), and the
global queries attend densely to all keys. Memory is ``O(T * window)`` instead of ``O(T^2)``, and the result is the
same as the dense mask (tests compare them). With a (128, 128) window and one global token the Small encoder runs an
hour of audio in about 3 GB.

Relation to NeMo: ``rel_pos`` attention with these masks equals NeMo's ``RelPositionMultiHeadAttention``;
a ``regular`` band without global tokens equals NeMo's sliding-window ``rel_pos_local_attn`` for a symmetric window
(``left == right``; NeMo misaligns the position terms of an asymmetric one). NeMo's Longformer-style global tokens
are a different formula (content-only scores for the global pairs, and a global key inside the window counted
twice), so ``global_tokens > 0`` here follows the mask definition above and does not reproduce NeMo checkpoints
fine-tuned with global tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from speechkit.modules.dropout import Dropout, dropout

__all__ = [
    "ATT_CONTEXT_STYLES",
    "AttentionContext",
    "AttentionMask",
    "RelPositionMultiHeadAttention",
    "RelPositionalEncoding",
    "rel_shift",
]

ATT_CONTEXT_STYLES = ("regular", "chunked_limited")

# Blockwise attention keeps each group of query blocks' score tensor under this many elements (~256 MB in fp32).
_MAX_BLOCK_GROUP_ELEMENTS = 1 << 26


# ---------------------------------------------------------------------------------------------------------------
# Positional encoding
# ---------------------------------------------------------------------------------------------------------------


class RelPositionalEncoding(nn.Module):
    """Sinusoids of signed distances, and the input scaling and dropout that precede the conformer blocks.

    Args:
        d_model: model width (even).
        max_len: distances ``-(max_len-1) ... max_len-1`` are tabulated up front; the table grows on demand.
        xscaling: multiply the input by ``sqrt(d_model)``.
        dropout: dropout on the (scaled) input (``dropout_pre_encoder``).
        dropout_emb: dropout on the position embeddings.

    Shape:
        - ``x``: ``(B, T, d_model)``.
        - output: ``(B, T, d_model)`` and ``pos_emb`` ``(1, 2K - 1, d_model)`` for distances ``K-1 ... -(K-1)``,
          ``K = T + cache_len`` (row ``r`` holds distance ``K - 1 - r``).
    """

    pe: torch.Tensor

    def __init__(self, d_model: int, max_len: int = 5000, xscaling: bool = True, dropout: float = 0.0,
                 dropout_emb: float = 0.0) -> None:
        super().__init__()
        if d_model % 2:
            raise ValueError(f"d_model={d_model}: the sinusoidal encoding needs an even width")
        self.d_model = d_model
        self.xscale = math.sqrt(d_model) if xscaling else None
        self.dropout = Dropout(dropout)
        self.dropout_emb = Dropout(dropout_emb) if dropout_emb > 0 else None
        self.register_buffer("pe", self._table(max_len), persistent=False)

    @property
    def max_len(self) -> int:
        """Largest tabulated distance + 1."""
        return (self.pe.size(0) + 1) // 2

    def _table(self, max_len: int, device: torch.device | None = None) -> torch.Tensor:
        # Rows run from distance max_len-1 down to -(max_len-1). Computed in float32, as the reference
        # implementation and its checkpoints were.
        dist = torch.arange(max_len - 1, -max_len, -1, dtype=torch.float32, device=device)[:, None]
        inv_freq = torch.exp(torch.arange(0, self.d_model, 2, dtype=torch.float32, device=device)
                             * (-math.log(10000.0) / self.d_model))
        pe = torch.empty(dist.size(0), self.d_model, device=device)
        pe[:, 0::2] = torch.sin(dist * inv_freq)
        pe[:, 1::2] = torch.cos(dist * inv_freq)
        return pe

    def positions(self, k: int) -> torch.Tensor:
        """Embeddings of distances ``k-1 ... -(k-1)``, shape ``(1, 2k - 1, d_model)`` (a view of the table)."""
        if k > self.max_len:
            self.pe = self._table(max(k, 2 * self.max_len), self.pe.device)
        center = self.max_len - 1
        return self.pe[center - (k - 1): center + k][None]

    def forward(self, x: torch.Tensor, cache_len: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Scale and drop out ``x``; return it with the position embeddings for ``T + cache_len`` keys."""
        if self.xscale is not None:
            x = x * self.xscale
        pos_emb = self.positions(x.size(1) + cache_len).to(x.dtype)
        if self.dropout_emb is not None:
            pos_emb = self.dropout_emb(pos_emb)
        return self.dropout(x), pos_emb


# ---------------------------------------------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttentionContext:
    """Who may attend to whom, independent of padding.

    Attributes:
        left: frames of left context, -1 = unlimited.
        right: frames of right context (look-ahead), -1 = unlimited.
        style: ``"regular"`` (band) or ``"chunked_limited"`` (chunks of ``right + 1`` frames).
        global_tokens: the first ``global_tokens`` frames attend to, and are attended by, every frame.
    """

    left: int = -1
    right: int = -1
    style: str = "regular"
    global_tokens: int = 0

    def __post_init__(self) -> None:
        for name in ("left", "right"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < -1:
                raise ValueError(f"att_context_size {name}={value!r}: must be an integer >= -1 (-1 = unlimited)")
        if self.style not in ATT_CONTEXT_STYLES:
            raise ValueError(f"att_context_style={self.style!r}: must be one of {', '.join(ATT_CONTEXT_STYLES)}")
        if self.style == "chunked_limited":
            if self.right < 0:
                raise ValueError("att_context_size right=-1: chunked_limited needs a finite right context "
                                 "(chunks are right + 1 frames)")
            if self.left > 0 and self.left % (self.right + 1):
                raise ValueError(f"att_context_size left={self.left}: chunked_limited needs a multiple of the "
                                 f"chunk size right + 1 = {self.right + 1}")
        if not isinstance(self.global_tokens, int) or self.global_tokens < 0:
            raise ValueError(f"global_tokens={self.global_tokens!r}: must be an integer >= 0")

    @property
    def unlimited(self) -> bool:
        """True when every frame sees every frame (no context mask at all)."""
        return self.left < 0 and self.right < 0

    @property
    def look_back(self) -> int:
        """Farthest visible frame to the left of a (non-global) query, or -1 if unlimited."""
        if self.left < 0:
            return -1
        return self.left + self.right if self.style == "chunked_limited" else self.left

    @property
    def look_ahead(self) -> int:
        """Farthest visible frame to the right of a (non-global) query, or -1 if unlimited."""
        return self.right

    def visible(self, qi: torch.Tensor, kj: torch.Tensor) -> torch.Tensor:
        """Context rule for absolute query indices ``qi`` and key indices ``kj`` (broadcast); True = visible."""
        ok = torch.ones(torch.broadcast_shapes(qi.shape, kj.shape), dtype=torch.bool, device=qi.device)
        if self.style == "regular":
            if self.left >= 0:
                ok = ok & (kj >= qi - self.left)
            if self.right >= 0:
                ok = ok & (kj <= qi + self.right)
        else:
            chunk = self.right + 1
            behind = torch.div(qi, chunk, rounding_mode="floor") - torch.div(kj, chunk, rounding_mode="floor")
            ok = ok & (behind >= 0)
            if self.left >= 0:
                ok = ok & (behind <= self.left // chunk)
        if self.global_tokens > 0:
            ok = ok | (qi < self.global_tokens) | (kj < self.global_tokens)
        return ok


def _key_ok(qi: torch.Tensor, kj: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Key padding: valid queries see keys below their length; padded queries (output unused) see any key."""
    n = lengths.view(-1, *([1] * qi.dim()))
    return (kj < n) | (qi >= n)


@dataclass
class _BlockPlan:
    size: int  # Q: query frames per block
    num: int  # blocks
    back: int  # A: look-back of the window
    ahead: int  # look-ahead of the window
    window_bias: torch.Tensor  # (B, 1, num, Q, g + W) additive mask, global keys first
    global_bias: torch.Tensor | None  # (B, 1, g, T) additive mask of the global queries' dense rows

    @property
    def width(self) -> int:
        return self.size + self.back + self.ahead


@dataclass
class AttentionMask:
    """The padding and context masks of one forward pass, built once and shared by every layer.

    Either ``dense`` (additive ``(B, 1, T, K)``: 0 = visible, -inf = masked) or ``blocks`` (blockwise plan for long
    inputs with limited left context) is set. Build with :meth:`build`.
    """

    context: AttentionContext
    lengths: torch.Tensor
    max_len: int
    dense: torch.Tensor | None = None
    blocks: _BlockPlan | None = None

    @classmethod
    def build(cls, lengths: torch.Tensor, max_len: int, context: AttentionContext, dtype: torch.dtype = torch.float32,
              block_size: int = 64, min_len_blockwise: int | None = 1024) -> AttentionMask:
        """Masks for a batch of ``lengths`` padded to ``max_len`` frames.

        Args:
            lengths: valid frames per utterance ``(B,)``.
            max_len: padded length ``T``.
            context: the context rule.
            dtype: dtype of the additive masks (the attention's compute dtype).
            block_size: query frames per block of the blockwise path.
            min_len_blockwise: use the blockwise path when the left context is limited and ``T`` is at least this
                (``None`` = never). Shorter inputs use the dense mask, which is faster there.

        Returns:
            The mask object the attention layers take.
        """
        dev = lengths.device
        lengths = lengths.to(torch.int64)
        g = context.global_tokens
        back, ahead = context.look_back, context.look_ahead
        blockwise = (min_len_blockwise is not None and back >= 0 and ahead >= 0
                     and max_len >= max(min_len_blockwise, block_size + max(back, ahead) + g, 2))
        if context.unlimited:
            # Key padding only, (B, 1, 1, T). Key 0 stays visible even for an empty utterance, so no row is empty.
            ok = torch.arange(max_len, device=dev)[None, :] < lengths.clamp(min=1)[:, None]
            return cls(context, lengths, max_len, dense=_additive(ok, dtype)[:, None, None])
        if not blockwise:
            idx = torch.arange(max_len, device=dev)
            qi, kj = idx[:, None], idx[None, :]
            ok = context.visible(qi, kj)[None] & _key_ok(qi, kj, lengths)  # (B, T, T)
            return cls(context, lengths, max_len, dense=_additive(ok, dtype)[:, None])
        q = block_size
        num = -(-max_len // q)
        qi = (torch.arange(num, device=dev)[:, None] * q + torch.arange(q, device=dev)[None, :])[:, :, None]
        kj = (torch.arange(num, device=dev)[:, None] * q - back
              + torch.arange(q + back + ahead, device=dev)[None, :])[:, None, :]  # (num, 1, W)
        ok = context.visible(qi, kj) & (kj >= g)  # kj < 0 is padding; global keys have their own slot
        ok = ok[None] & _key_ok(qi, kj, lengths)  # (B, num, Q, W)
        if g > 0:
            gk = torch.arange(g, device=dev)
            ok_g = _key_ok(qi, gk[None, None, :], lengths)  # (B, num, Q, g)
            ok = torch.cat([ok_g, ok], dim=-1)
            tq = torch.arange(g, device=dev)[:, None]
            global_bias = _additive(_key_ok(tq, torch.arange(max_len, device=dev)[None, :], lengths), dtype)[:, None]
        else:
            global_bias = None
        plan = _BlockPlan(q, num, back, ahead, _additive(ok, dtype)[:, None], global_bias)
        return cls(context, lengths, max_len, blocks=plan)


def _additive(ok: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.zeros(ok.shape, dtype=dtype, device=ok.device).masked_fill_(~ok, float("-inf"))


# ---------------------------------------------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------------------------------------------


def rel_shift(x: torch.Tensor, offset: int, width: int) -> torch.Tensor:
    """The relative shift: ``out[..., i, j] = x[..., i, offset - i + j]``, as a strided view (no copy).

    ``x[..., i, r]`` scores query ``i`` against row ``r`` of a table of distances that decrease by one per row.
    Picking column ``offset - i + j`` for key ``j`` turns that into the score at the query-key distance. For ``T``
    queries that are the last ``T`` of ``K`` keys and the table ``K-1 ... -(K-1)``: ``offset = T - 1``,
    ``width = K``.

    Args:
        x: ``(..., Tq, P)`` scores against ``P`` tabulated distances.
        offset: column of ``x`` read by ``out[..., 0, 0]``.
        width: number of key columns of the output.

    Returns:
        ``(..., Tq, width)`` view of (a contiguous copy of) ``x``.
    """
    tq, p = x.shape[-2:]
    if offset - (tq - 1) < 0 or offset + width > p:
        raise ValueError(f"rel_shift: offset {offset}, width {width} do not fit {tq} queries x {p} distances")
    x = x.contiguous()
    stride = x.stride()
    return x.as_strided((*x.shape[:-1], width), (*stride[:-2], p - 1, 1), x.storage_offset() + offset)


class RelPositionMultiHeadAttention(nn.Module):
    """Multi-head self-attention with relative positions (Transformer-XL biases ``u``, ``v``).

    Args:
        d_model: model width, divisible by ``n_heads``.
        n_heads: attention heads.
        dropout: dropout on the attention probabilities (``dropout_att``).

    Attributes:
        use_sdpa: evaluate with ``scaled_dot_product_attention`` (default) or an explicit softmax (same result).

    Shape:
        - ``x``: ``(B, T, d_model)``; ``pos_emb``: ``(1, 2T - 1, d_model)`` from :class:`RelPositionalEncoding`.
        - output: ``(B, T, d_model)``.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.dropout = dropout
        self.use_sdpa = True
        self.scale = 1.0 / math.sqrt(self.d_head)
        self.linear_q = nn.Linear(d_model, d_model)
        self.linear_k = nn.Linear(d_model, d_model)
        self.linear_v = nn.Linear(d_model, d_model)
        self.linear_out = nn.Linear(d_model, d_model)
        self.linear_pos = nn.Linear(d_model, d_model, bias=False)
        self.pos_bias_u = nn.Parameter(torch.zeros(n_heads, self.d_head))
        self.pos_bias_v = nn.Parameter(torch.zeros(n_heads, self.d_head))

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, d_model)`` -> ``(B, H, T, d_h)``."""
        return x.view(x.size(0), x.size(1), self.n_heads, self.d_head).transpose(1, 2)

    def _pos(self, pos_emb: torch.Tensor) -> torch.Tensor:
        """Project position embeddings ``(1, P, d_model)`` -> ``(H, P, d_h)``."""
        return self.linear_pos(pos_emb[0]).view(-1, self.n_heads, self.d_head).transpose(0, 1)

    def forward(self, x: torch.Tensor, pos_emb: torch.Tensor, mask: AttentionMask,
                memory: torch.Tensor | None = None) -> torch.Tensor:
        """Attend.

        Args:
            x: layer input ``(B, T, d_model)``, the queries (and keys and values).
            pos_emb: embeddings of distances ``K-1 ... -(K-1)``, ``(1, 2K - 1, d_model)``, ``K = C + T``.
            mask: :meth:`AttentionMask.build` output; with ``memory``, a dense mask ``(B, 1, T, K)``.
            memory: optional earlier layer inputs ``(B, C, d_model)`` that the ``T`` queries also attend to, as
                keys and values placed before ``x`` (the attention cache of streaming inference).

        Returns:
            ``(B, T, d_model)``.
        """
        kv = x if memory is None else torch.cat([memory, x], dim=1)
        q, k, v = self._heads(self.linear_q(x)), self._heads(self.linear_k(kv)), self._heads(self.linear_v(kv))
        q_u = q + self.pos_bias_u[:, None]
        q_v = q + self.pos_bias_v[:, None]
        if mask.blocks is not None:
            if memory is not None:
                raise ValueError("blockwise attention does not take a memory; build a dense mask")
            out = self._blockwise(q_u, q_v, k, v, pos_emb, mask)
        else:
            t, k_len = q.size(2), k.size(2)
            p = self._pos(pos_emb)  # (H, 2K-1, d_h)
            pos_scores = rel_shift(q_v @ p.transpose(1, 2), t - 1, k_len)  # (B, H, T, K)
            out = self._attend(q_u, k, v, pos_scores * self.scale + mask.dense)
        out = out.transpose(1, 2).reshape(x.size(0), -1, self.n_heads * self.d_head)
        return self.linear_out(out)

    def _attend(self, q_u: torch.Tensor, k: torch.Tensor, v: torch.Tensor, att_bias: torch.Tensor) -> torch.Tensor:
        """``softmax(q_u k^T / sqrt(d_h) + att_bias) v`` over the last two axes (``att_bias`` is already scaled)."""
        p_drop = self.dropout if self.training else 0.0
        # With dropout on the CPU, SDPA runs its math path with PyTorch's slower dropout: the same math here uses
        # speechkit's (speechkit.modules.dropout).
        if self.use_sdpa and (p_drop == 0.0 or q_u.device.type != "cpu"):
            return F.scaled_dot_product_attention(q_u, k, v, attn_mask=att_bias, dropout_p=p_drop)
        scores = (q_u @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.d_head)) + att_bias
        probs = dropout(torch.softmax(scores, dim=-1), p_drop, self.training)
        return probs @ v

    def _blockwise(self, q_u: torch.Tensor, q_v: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   pos_emb: torch.Tensor, mask: AttentionMask) -> torch.Tensor:
        """Limited-context attention in query blocks: ``O(T * window)`` memory, same result as the dense mask."""
        plan = mask.blocks
        assert plan is not None
        b, h, t, dh = q_u.shape
        g = mask.context.global_tokens
        qn, nb, a, w = plan.size, plan.num, plan.back, plan.width
        center = t - 1  # row of distance 0 in pos_emb
        tp = nb * qn

        def blocks(x: torch.Tensor) -> torch.Tensor:  # (B, H, T, d) -> (B, H, nb, Q, d)
            return F.pad(x, (0, 0, 0, tp - t)).view(b, h, nb, qn, -1)

        def windows(x: torch.Tensor) -> torch.Tensor:  # (B, H, T, d) -> (B, H, nb, W, d)
            x = F.pad(x, (0, 0, a, tp - t + plan.ahead))
            return x.unfold(2, w, qn).transpose(-1, -2)

        qb_u, qb_v, kw, vw = blocks(q_u), blocks(q_v), windows(k), windows(v)
        # Window distances i - j run from Q-1+A (first query, first key) down to -(Q-1+ahead).
        top = qn - 1 + a
        p_win = self._pos(pos_emb[:, center - top: center + qn + plan.ahead])  # (H, 2Q+A+ahead-1, d_h)
        if g > 0:
            kg, vg = k[:, :, :g], v[:, :, :g]
            # Distances i - j for the global keys j < g, every query i < T: rows T-1 ... -(g-1) of the table.
            p_glob = self._pos(pos_emb[:, center - (t - 1): center + g])  # (H, T+g-1, d_h)
            pos_glob = torch.stack([
                (q_v * p_glob[:, t - 1 - torch.arange(t, device=q_v.device) + j]).sum(-1) for j in range(g)
            ], dim=-1)  # (B, H, T, g)
            pos_glob = F.pad(pos_glob, (0, 0, 0, tp - t)).view(b, h, nb, qn, g)
        per_block = b * h * qn * (g + w + p_win.size(1))
        group = max(1, _MAX_BLOCK_GROUP_ELEMENTS // per_block)
        outs = []
        for s in range(0, nb, group):
            e = min(nb, s + group)
            pos = rel_shift(qb_v[:, :, s:e] @ p_win.transpose(1, 2)[:, None], qn - 1, w)  # (B, H, n, Q, W)
            keys, vals = kw[:, :, s:e], vw[:, :, s:e]
            if g > 0:
                pos = torch.cat([pos_glob[:, :, s:e], pos], dim=-1)
                n = e - s
                keys = torch.cat([kg[:, :, None].expand(b, h, n, g, dh), keys], dim=-2)
                vals = torch.cat([vg[:, :, None].expand(b, h, n, g, dh), vals], dim=-2)
            att_bias = pos * self.scale + plan.window_bias[:, :, s:e]  # (B, H, n, Q, g + W)
            # Heads and blocks share one batch axis so SDPA sees 4-D inputs.
            n = e - s
            o = self._attend(qb_u[:, :, s:e].reshape(b, h * n, qn, dh), keys.reshape(b, h * n, -1, dh),
                             vals.reshape(b, h * n, -1, dh), att_bias.reshape(b, h * n, qn, -1))
            outs.append(o.view(b, h, n * qn, dh))
        out = torch.cat(outs, dim=2)[:, :, :t]
        if g > 0:
            # The global queries see everything: a dense (g x T) attention replaces their block rows.
            p_rows = self._pos(pos_emb[:, center - (g - 1): center + t])  # distances g-1 ... -(T-1)
            pos = rel_shift(q_v[:, :, :g] @ p_rows.transpose(1, 2), g - 1, t)
            out_g = self._attend(q_u[:, :, :g], k, v, pos * self.scale + plan.global_bias)
            out = torch.cat([out_g, out[:, :, g:]], dim=2)
        return out
