"""TitaNet: parameter counts equal NeMo's, pooling ignores padding, shapes."""

from __future__ import annotations

import torch

from speechkit.modules.titanet import AttentiveStatsPool, TitaNet, TitaNetConfig


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_match_nemo() -> None:
    small = TitaNet(TitaNetConfig())
    # NeMo 3.0.0: ConvASREncoder (titanet blocks, 80 mels) 4,056,816 (S) / 19,353,840 (L); SpeakerDecoder
    # (attention pooling, 192-d, 107 classes, angular) 2,788,992.
    assert count(small.encoder) == 4_056_816
    assert count(small.pool) + count(small.pool_norm) + count(small.embed) + count(small.classifier) == 2_788_992
    large_encoder = TitaNet(TitaNetConfig(channels=1024)).encoder
    assert count(large_encoder) == 19_353_840


def tiny() -> TitaNetConfig:
    return TitaNetConfig(channels=16, epilog_channels=32, attention_channels=8, embedding_dim=6, num_classes=4)


def test_batch_equals_single_and_angular_range() -> None:
    torch.manual_seed(0)
    model = TitaNet(tiny()).eval()
    a, b = torch.randn(8000), torch.randn(5000)
    batch = torch.zeros(2, 8000)
    batch[0], batch[1, :5000] = a, b
    logits, emb = model(batch, torch.tensor([8000, 5000]))
    la, ea = model(a[None], torch.tensor([8000]))
    lb, eb = model(b[None], torch.tensor([5000]))
    torch.testing.assert_close(emb, torch.cat([ea, eb]), atol=1e-4, rtol=1e-4)
    assert logits.shape == (2, 4) and (logits.abs() <= 1 + 1e-5).all()


def test_pool_shape_and_uniform_case() -> None:
    pool = AttentiveStatsPool(4, 3)
    for p in pool.score.parameters():
        torch.nn.init.zeros_(p)  # equal scores: plain mean and std
    x = torch.randn(1, 4, 10)
    out = pool.eval()(x, torch.tensor([10]))
    torch.testing.assert_close(out[0, :4], x[0].mean(-1))
    torch.testing.assert_close(out[0, 4:], x[0].std(-1, unbiased=False))


def test_plain_classifier() -> None:
    cfg = tiny()
    cfg.angular = False
    logits, _ = TitaNet(cfg).eval()(torch.randn(1, 4000), torch.tensor([4000]))
    assert logits.shape == (1, 4)
