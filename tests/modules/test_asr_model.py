"""TransducerASR: shapes, losses of every model type, sub-batched joint == whole batch, config errors."""

from __future__ import annotations

import pytest
import torch

from speechkit.config import load_config, to_yaml
from speechkit.decoding import GreedyOptions
from speechkit.losses import rnnt_loss
from speechkit.modules.asr import ASRConfigError, ASRModelConfig, TransducerASR, native_bfloat16
from speechkit.modules.fastconformer import FastConformerConfig

V = 20


def tiny_config(model_type: str = "tdt", ctc_weight: float = 0.0, **loss: object) -> ASRModelConfig:
    """A tiny model without randomness in training mode (no dither, dropout or SpecAugment)."""
    cfg = ASRModelConfig(
        encoder=FastConformerConfig(d_model=32, n_heads=2, n_layers=2, subsampling_channels=16, dropout=0.0,
                                    dropout_pre_encoder=0.0, dropout_att=0.0),
        model_type=model_type, vocab_size=V, pred_hidden=24, joint_hidden=24, pred_dropout=0.0, joint_dropout=0.0,
        ctc_weight=ctc_weight,
    )
    cfg.features.dither = 0.0
    cfg.spec_augment.freq_masks = cfg.spec_augment.time_masks = 0
    for key, value in loss.items():
        setattr(cfg.loss, key, value)
    return cfg


def batch(seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    audio = 0.1 * torch.randn(3, 16000, generator=g)
    audio_lens = torch.tensor([16000, 11000, 7000])
    targets = torch.randint(0, V, (3, 6), generator=g)
    target_lens = torch.tensor([6, 4, 0])  # an empty transcript is legal
    return audio, audio_lens, targets, target_lens


def build(cfg: ASRModelConfig, seed: int = 0) -> TransducerASR:
    torch.manual_seed(seed)
    return TransducerASR.from_config(cfg)


@pytest.mark.parametrize("model_type", ["rnnt", "tdt", "multiblank"])
@pytest.mark.parametrize("ctc_weight", [0.0, 0.3])
def test_shapes_loss_and_gradients(model_type: str, ctc_weight: float) -> None:
    model = build(tiny_config(model_type, ctc_weight))
    audio, audio_lens, targets, target_lens = batch()
    enc, enc_lens = model.encode(audio, audio_lens)
    # 100 feature frames per second, then 8x subsampling: 1 s -> 13 frames.
    assert enc.shape == (3, 13, 32)
    assert enc_lens.tolist() == [13, 9, 6]
    logits = model.joint_logits(enc, targets, target_lens)
    assert logits.shape == (3, 13, 7, model.layout.num_outputs)
    expected_k = {"rnnt": V + 1, "tdt": V + 1 + 5, "multiblank": V + 3 + 1}[model_type]
    assert model.layout.num_outputs == expected_k

    out = model(audio, audio_lens, targets, target_lens)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert out.num_tokens == 10
    assert (out.ctc_loss is not None) == (ctc_weight > 0)
    out.loss.backward()
    for name, part in (("encoder", model.encoder), ("prediction", model.prediction), ("joint", model.joint)):
        grads = [p.grad for p in part.parameters() if p.requires_grad]
        assert all(g is not None for g in grads), name
        assert sum(float(g.abs().sum()) for g in grads) > 0, name
    if ctc_weight:
        assert model.ctc is not None and model.ctc.proj.weight.grad is not None


def test_rnnt_loss_is_the_mean_volume_of_the_functional_loss() -> None:
    model = build(tiny_config("rnnt")).eval()
    audio, audio_lens, targets, target_lens = batch()
    out = model(audio, audio_lens, targets, target_lens)
    enc, enc_lens = model.encode(audio, audio_lens)
    logits = model.joint_logits(enc, targets, target_lens)
    ref = rnnt_loss(logits, targets, enc_lens, target_lens, reduction="mean_volume")
    assert out.loss.item() == pytest.approx(ref.item(), rel=1e-5)


@pytest.mark.parametrize("model_type", ["rnnt", "tdt", "multiblank"])
@pytest.mark.parametrize("recompute", [False, True])
def test_sub_batched_joint_equals_whole_batch(model_type: str, recompute: bool) -> None:
    """Invariant: the sub-batched joint + loss (each sub-batch narrowed to its own T', U) gives the same loss and the
    same gradients as the whole batch at once."""
    audio, audio_lens, targets, target_lens = batch()
    results = []
    for fused in (0, 2):
        model = build(tiny_config(model_type, fused_batch_size=fused, fused_recompute=recompute, omega=0.0))
        out = model(audio, audio_lens, targets, target_lens)
        out.loss.backward()
        results.append((out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (loss0, grads0), (loss1, grads1) = results
    torch.testing.assert_close(loss1, loss0, rtol=1e-5, atol=1e-6)
    for name in grads0:
        torch.testing.assert_close(grads1[name], grads0[name], rtol=1e-4, atol=1e-6, msg=name)


def test_batch_loss_equals_sum_of_single_utterance_losses() -> None:
    """Invariant: padding changes nothing: with reduction "sum" a batch costs the sum of its utterances (eval mode:
    in training BatchNorm normalises with the batch's statistics, which do depend on the batch)."""
    model = build(tiny_config("tdt", reduction="sum", omega=0.0)).eval()
    audio, audio_lens, targets, target_lens = batch()
    total = model(audio, audio_lens, targets, target_lens).loss.detach()
    singles = sum(
        model(audio[i:i + 1, : audio_lens[i]], audio_lens[i:i + 1], targets[i:i + 1, : max(int(target_lens[i]), 1)],
              target_lens[i:i + 1]).loss.detach()
        for i in range(3)
    )
    assert total.item() == pytest.approx(float(singles), rel=1e-4)


def test_omega_one_always_uses_the_rnnt_loss() -> None:
    model = build(tiny_config("tdt", omega=1.0))
    out = model(*batch())
    assert out.used_rnnt
    assert not build(tiny_config("tdt", omega=0.0))(*batch()).used_rnnt


def test_decode_runs_in_eval_mode_and_restores_the_mode() -> None:
    cfg = tiny_config("tdt", ctc_weight=0.3)
    cfg.features.dither = 1e-2  # decoding must not see dither: results would vary between calls
    model = build(cfg).train()
    audio, audio_lens, _, _ = batch()
    hyps1 = model.decode(audio, audio_lens, GreedyOptions(max_symbols=3))
    hyps2 = model.decode(audio, audio_lens, GreedyOptions(max_symbols=3))
    assert model.training
    assert [h.tokens for h in hyps1] == [h.tokens for h in hyps2]
    assert [h.num_frames for h in hyps1] == [13, 9, 6]
    assert all(0 <= t < V for h in hyps1 for t in h.tokens)
    assert len(model.decode_ctc(audio, audio_lens)) == 3
    assert model.frame_seconds == pytest.approx(0.08)
    with pytest.raises(ValueError, match="no CTC head"):
        build(tiny_config("rnnt")).decode_ctc(audio, audio_lens)


def test_batched_decode_equals_per_utterance_decode() -> None:
    model = build(tiny_config("multiblank")).eval()
    audio, audio_lens, _, _ = batch()
    batched = model.decode(audio, audio_lens)
    for i, hyp in enumerate(batched):
        single = model.decode(audio[i:i + 1, : audio_lens[i]], audio_lens[i:i + 1])[0]
        assert single.tokens == hyp.tokens


def test_config_yaml_round_trip() -> None:
    from omegaconf import OmegaConf

    cfg = tiny_config("multiblank", ctc_weight=0.2)
    again = load_config(ASRModelConfig, values=OmegaConf.to_container(OmegaConf.create(to_yaml(cfg))))
    assert again == cfg
    assert again.layout() == cfg.layout()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"vocab_size": 0}, "vocab_size"),
        ({"model_type": "ctc"}, "model_type"),
        ({"durations": [0, 2, 3]}, "durations"),
        ({"model_type": "multiblank", "big_blank_durations": [1, 2]}, "big_blank_durations"),
        ({"ctc_weight": 1.0}, "ctc_weight"),
        ({"pred_hidden": 0}, "pred_hidden"),
        ({"spec_augment": {"freq_warp": 0.5}}, "spec_augment.freq_warp"),
        ({"loss": {"joint_dtype": "float16"}}, "loss.joint_dtype"),
    ],
)
def test_config_errors_name_the_field(change: dict, message: str) -> None:
    cfg = tiny_config()
    for key, value in change.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                setattr(getattr(cfg, key), sub, v)
        else:
            setattr(cfg, key, value)
    with pytest.raises(ASRConfigError, match=message):
        TransducerASR.from_config(cfg)


def test_frequency_warp_is_built_from_config_and_changes_only_training_features() -> None:
    cfg = tiny_config()
    plain = build(cfg)
    assert plain.freq_warp is None
    cfg.spec_augment.freq_warp = 0.15
    model = build(cfg)
    assert model.freq_warp is not None and model.freq_warp.max_warp == 0.15
    # No new state: a model file saved without warping loads into one with it.
    assert set(model.state_dict()) == set(plain.state_dict())
    audio, audio_lens, _, _ = batch()
    eval_feats, _ = model.eval().features(audio, audio_lens)
    assert torch.allclose(eval_feats, plain.eval().features(audio, audio_lens)[0])
    train_feats, _ = model.train().features(audio, audio_lens)
    assert not torch.allclose(train_feats, eval_feats)


def test_feature_and_encoder_widths_must_agree() -> None:
    cfg = tiny_config()
    cfg.features.n_mels = 64
    with pytest.raises(ASRConfigError, match="feat_in"):
        TransducerASR.from_config(cfg)


@pytest.mark.parametrize("model_type", ["rnnt", "tdt", "multiblank"])
def test_bfloat16_joint_gives_the_float32_loss_and_gradients(model_type: str) -> None:
    """joint_dtype=bfloat16 changes the arithmetic of the joint, not the model: the loss and every gradient agree
    with float32 to bfloat16's precision, and the parameters stay float32."""
    results = {}
    for dtype in ("float32", "bfloat16"):
        model = build(tiny_config(model_type, ctc_weight=0.3, joint_dtype=dtype, omega=0.0))
        out = model(*batch())
        out.loss.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).double()
        assert all(p.dtype == torch.float32 for p in model.parameters())
        results[dtype] = (float(out.transducer_loss), grads)
    (loss32, grad32), (loss16, grad16) = results["float32"], results["bfloat16"]
    assert loss16 != loss32  # the joint really ran in bfloat16
    assert abs(loss16 - loss32) < 1e-2 * loss32
    assert float(torch.nn.functional.cosine_similarity(grad32, grad16, dim=0)) > 0.999
    assert abs(float(grad16.norm() / grad32.norm()) - 1.0) < 1e-2


def test_auto_joint_dtype_follows_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    import speechkit.modules.asr as asr

    model = build(tiny_config("tdt", joint_dtype="auto", omega=0.0))
    losses = {}
    for native in (False, True):
        monkeypatch.setattr(asr, "_cpu_has_bfloat16", lambda native=native: native)
        assert native_bfloat16(torch.device("cpu")) is native
        losses[native] = float(model(*batch()).transducer_loss)
    model.loss_config.joint_dtype = "float32"
    assert losses[False] == float(model(*batch()).transducer_loss)
    model.loss_config.joint_dtype = "bfloat16"
    assert losses[True] == float(model(*batch()).transducer_loss)
