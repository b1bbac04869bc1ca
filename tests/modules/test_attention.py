"""Relative-position attention: masks, relative shift, SDPA vs explicit softmax vs a brute-force reference,
blockwise (long-input) path vs dense, no NaN rows."""

from __future__ import annotations

import math

import pytest
import torch

from speechkit.modules.attention import (
    AttentionContext,
    AttentionMask,
    RelPositionalEncoding,
    RelPositionMultiHeadAttention,
    rel_shift,
)

D_MODEL, HEADS = 16, 2

CONTEXTS = [
    AttentionContext(-1, -1),
    AttentionContext(3, 2),
    AttentionContext(0, 0),
    AttentionContext(5, -1),
    AttentionContext(-1, 1),
    AttentionContext(4, 1, "chunked_limited"),
    AttentionContext(-1, 2, "chunked_limited"),
    AttentionContext(0, 3, "chunked_limited"),
    AttentionContext(2, 2, global_tokens=2),
    AttentionContext(3, 0, global_tokens=1),
    AttentionContext(4, 1, "chunked_limited", global_tokens=1),
]


def rule(i: int, j: int, c: AttentionContext) -> bool:
    """The context rule, written out independently of the implementation."""
    if i < c.global_tokens or j < c.global_tokens:
        return True
    if c.style == "regular":
        return (c.left < 0 or j >= i - c.left) and (c.right < 0 or j <= i + c.right)
    chunk = c.right + 1
    behind = i // chunk - j // chunk
    return behind >= 0 and (c.left < 0 or behind <= c.left // chunk)


def sinusoid(p: float, d: int) -> torch.Tensor:
    k = torch.arange(0, d, 2, dtype=torch.float64)
    ang = p / 10000.0 ** (k / d)
    out = torch.empty(d, dtype=torch.float64)
    out[0::2], out[1::2] = torch.sin(ang), torch.cos(ang)
    return out


def reference(att: RelPositionMultiHeadAttention, x: torch.Tensor, lengths: torch.Tensor,
              c: AttentionContext) -> torch.Tensor:
    """Brute force in float64: every (i, j) score from the formula, softmax over the visible keys of valid rows."""
    b, t, d = x.shape
    h, dh = att.n_heads, att.d_head
    x = x.double()
    lin = {n: getattr(att, n) for n in ("linear_q", "linear_k", "linear_v", "linear_out", "linear_pos")}

    def proj(name: str, y: torch.Tensor) -> torch.Tensor:
        m = lin[name]
        out = y @ m.weight.double().T
        return out + m.bias.double() if m.bias is not None else out

    q, k, v = (proj(n, x).view(b, t, h, dh) for n in ("linear_q", "linear_k", "linear_v"))
    pe = torch.stack([torch.stack([sinusoid(i - j, d) for j in range(t)]) for i in range(t)])  # (T, T, D)
    p = proj("linear_pos", pe).view(t, t, h, dh)
    u, vb = att.pos_bias_u.double(), att.pos_bias_v.double()
    scores = torch.einsum("bihd,bjhd->bhij", q + u, k) + torch.einsum("bihd,ijhd->bhij", q + vb, p)
    scores = scores / math.sqrt(dh)
    out = torch.zeros(b, t, h, dh, dtype=torch.float64)
    for bi in range(b):
        for i in range(int(lengths[bi])):
            ok = torch.tensor([rule(i, j, c) and j < lengths[bi] for j in range(t)])
            w = torch.softmax(scores[bi, :, i].masked_fill(~ok, float("-inf")), dim=-1)  # (H, T)
            out[bi, i] = torch.einsum("hj,jhd->hd", w, v[bi])
    return proj("linear_out", out.reshape(b, t, d))


def make_attention(seed: int = 0) -> RelPositionMultiHeadAttention:
    torch.manual_seed(seed)
    att = RelPositionMultiHeadAttention(D_MODEL, HEADS, dropout=0.0).eval()
    with torch.no_grad():  # zero-initialised biases would hide a misplaced u or v
        att.pos_bias_u.normal_()
        att.pos_bias_v.normal_()
    return att


def run(att: RelPositionMultiHeadAttention, x: torch.Tensor, lengths: torch.Tensor, c: AttentionContext,
        sdpa: bool = True, block_size: int | None = None) -> torch.Tensor:
    att.use_sdpa = sdpa
    pos_emb = RelPositionalEncoding(D_MODEL, max_len=8).positions(x.size(1))
    mask = AttentionMask.build(lengths, x.size(1), c, block_size=block_size or 64,
                               min_len_blockwise=0 if block_size else None)
    assert (mask.blocks is not None) == (block_size is not None and c.look_back >= 0 and c.look_ahead >= 0)
    return att(x, pos_emb, mask)


def assert_valid_close(a: torch.Tensor, b: torch.Tensor, lengths: torch.Tensor, tol: float = 1e-5) -> None:
    for i, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(a[i, :n].double(), b[i, :n].double(), rtol=tol, atol=tol)


# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("c", CONTEXTS, ids=str)
def test_mask_rules_bruteforce(c: AttentionContext) -> None:
    t = 23
    idx = torch.arange(t)
    got = c.visible(idx[:, None], idx[None, :])
    want = torch.tensor([[rule(i, j, c) for j in range(t)] for i in range(t)])
    assert torch.equal(got, want)
    lengths = torch.tensor([23, 11, 1])
    mask = AttentionMask.build(lengths, t, c)
    allowed = torch.isfinite(mask.dense).expand(3, 1, t, t)[:, 0]
    for b, n in enumerate(lengths.tolist()):
        assert torch.equal(allowed[b, :n], want[:n] & (idx[None, :] < n))  # valid rows: context + key padding
        assert allowed[b].any(-1).all()  # no empty row anywhere


def test_chunked_limited_mask_picture() -> None:
    # left 4, right 1: chunks of 2 frames, each sees its own chunk and the 2 before it.
    c = AttentionContext(4, 1, "chunked_limited")
    idx = torch.arange(8)
    got = c.visible(idx[:, None], idx[None, :]).int()
    want = torch.tensor([
        [1, 1, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 1, 0, 0],
        [0, 0, 1, 1, 1, 1, 1, 1],
        [0, 0, 1, 1, 1, 1, 1, 1],
    ])
    assert torch.equal(got, want)


def test_context_errors() -> None:
    with pytest.raises(ValueError, match="multiple of the chunk size"):
        AttentionContext(5, 1, "chunked_limited")
    with pytest.raises(ValueError, match="finite right context"):
        AttentionContext(4, -1, "chunked_limited")
    with pytest.raises(ValueError, match="left=-2"):
        AttentionContext(-2, 0)
    with pytest.raises(ValueError, match="att_context_style"):
        AttentionContext(2, 2, "banded")
    with pytest.raises(ValueError, match="global_tokens"):
        AttentionContext(2, 2, global_tokens=-1)


def test_rel_shift_bruteforce() -> None:
    torch.manual_seed(0)
    for t, k in [(5, 5), (3, 7), (1, 1), (1, 4)]:
        x = torch.randn(2, 3, t, 2 * k - 1)
        got = rel_shift(x, t - 1, k)
        want = torch.empty(2, 3, t, k)
        for i in range(t):
            for j in range(k):
                # query i sits at absolute position (k - t) + i; row r of x holds distance (k - 1) - r.
                dist = (k - t + i) - j
                want[:, :, i, j] = x[:, :, i, (k - 1) - dist]
        assert torch.equal(got, want)
    with pytest.raises(ValueError, match="rel_shift"):
        rel_shift(torch.randn(4, 5), 0, 3)


def test_positional_encoding_table() -> None:
    enc = RelPositionalEncoding(8, max_len=4, xscaling=True)
    pos = enc.positions(3)
    assert pos.shape == (1, 5, 8)
    for r, dist in enumerate([2, 1, 0, -1, -2]):
        torch.testing.assert_close(pos[0, r], sinusoid(dist, 8).float())
    big = enc.positions(10)  # grows the table on demand; the old rows keep their values
    assert big.shape == (1, 19, 8) and enc.max_len >= 10
    torch.testing.assert_close(big[0, 9 - 2: 9 + 3], pos[0])
    x = torch.randn(2, 3, 8)
    y, pos_emb = enc(x)
    torch.testing.assert_close(y, x * math.sqrt(8))
    assert pos_emb.shape == (1, 5, 8)


@pytest.mark.parametrize("c", CONTEXTS, ids=str)
def test_attention_matches_bruteforce(c: AttentionContext) -> None:
    att = make_attention(1)
    torch.manual_seed(2)
    t = 13
    lengths = torch.tensor([13, 7, 1])
    x = torch.randn(3, t, D_MODEL)
    want = reference(att, x, lengths, c)
    with torch.no_grad():
        for sdpa in (True, False):
            assert_valid_close(run(att, x, lengths, c, sdpa=sdpa), want, lengths)
            if c.look_back >= 0 and c.look_ahead >= 0:
                for block in (2, 3, 5):
                    assert_valid_close(run(att, x, lengths, c, sdpa=sdpa, block_size=block), want, lengths)


@pytest.mark.parametrize("c", [AttentionContext(6, 3), AttentionContext(8, 3, "chunked_limited"),
                               AttentionContext(5, 5, global_tokens=3)], ids=str)
def test_blockwise_equals_dense_longer(c: AttentionContext) -> None:
    att = make_attention(3)
    torch.manual_seed(4)
    lengths = torch.tensor([150, 97, 40, 2])
    x = torch.randn(4, 150, D_MODEL)
    with torch.no_grad():
        dense = run(att, x, lengths, c)
        for block in (4, 16, 33):
            assert_valid_close(run(att, x, lengths, c, block_size=block), dense, lengths)


def test_blockwise_gradients_equal_dense() -> None:
    att = make_attention(5)
    c = AttentionContext(4, 2, global_tokens=1)
    lengths = torch.tensor([40, 25])
    x0 = torch.randn(2, 40, D_MODEL)
    keep = (torch.arange(40)[None, :] < lengths[:, None])[..., None]
    grads = []
    for block in (None, 8):
        att.zero_grad()
        x = x0.clone().requires_grad_(True)
        (run(att, x, lengths, c, block_size=block) * keep).pow(2).sum().backward()
        grads.append([x.grad] + [p.grad.clone() for p in att.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert att.pos_bias_u.grad.abs().sum() > 0 and att.pos_bias_v.grad.abs().sum() > 0


@pytest.mark.parametrize("c", [AttentionContext(-1, -1), AttentionContext(0, 0), AttentionContext(2, 1),
                               AttentionContext(2, 1, "chunked_limited"), AttentionContext(1, 1, global_tokens=3)],
                         ids=str)
def test_no_nan_rows(c: AttentionContext) -> None:
    att = make_attention(6)
    lengths = torch.tensor([0, 1, 9])
    x = torch.randn(3, 9, D_MODEL)
    for sdpa in (True, False):
        for block in (None, 2):
            out = run(att, x, lengths, c, sdpa=sdpa, block_size=block)
            assert torch.isfinite(out).all()
    x1 = torch.randn(2, 1, D_MODEL)
    out = run(att, x1, torch.tensor([1, 1]), c)
    assert out.shape == (2, 1, D_MODEL) and torch.isfinite(out).all()


def test_memory_equals_attention_over_concatenation() -> None:
    # Queries = the last T of K frames; keys/values = earlier frames (the memory) + the queries themselves.
    att = make_attention(7)
    torch.manual_seed(8)
    c_len, t = 5, 4
    full = torch.randn(2, c_len + t, D_MODEL)
    enc = RelPositionalEncoding(D_MODEL, max_len=4)
    everyone = AttentionMask.build(torch.tensor([c_len + t] * 2), c_len + t, AttentionContext())
    with torch.no_grad():
        want = att(full, enc.positions(c_len + t), everyone)[:, c_len:]
        dense = AttentionMask(AttentionContext(), torch.tensor([t, t]), t,
                              dense=torch.zeros(2, 1, t, c_len + t))
        got = att(full[:, c_len:], enc.positions(c_len + t), dense, memory=full[:, :c_len])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
