"""FastConformer encoder: golden parity with NeMo, presets, padding invariance, causality, gradients, config errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from speechkit.modules.fastconformer import (
    ConvModule,
    FastConformerConfig,
    FastConformerConfigError,
    FastConformerEncoder,
    nemo_state_dict_to_speechkit,
)
from speechkit.modules.subsampling import subsampled_lengths

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "fastconformer_golden.pt"

# NeMo 3.0.0 ConformerEncoder parameter counts (feat_in 80, dw_striding x8 with 256 channels, ff x4, kernel 9,
# untied biases), computed with the peer environment.
NEMO_PARAMS = {"tiny": 505_024, "small": 12_600_240, "medium": 26_128_640, "large": 108_762_112}


def _tiny(**overrides: object) -> FastConformerEncoder:
    torch.manual_seed(0)
    enc = FastConformerEncoder(FastConformerConfig.preset("tiny", subsampling_channels=16, **overrides))
    with torch.no_grad():  # non-trivial biases and norm statistics, so nothing is accidentally neutral
        for name, p in enc.named_parameters():
            if "pos_bias" in name or name.endswith("bias"):
                p.normal_(0.0, 0.2)
        for m in enc.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_(0.0, 0.3)
                m.running_var.uniform_(0.5, 1.5)
    return enc.eval()


def _streaming(**overrides: object) -> FastConformerEncoder:
    kw = dict(causal_downsampling=True, conv_context="causal", conv_norm="layer_norm", att_context_size=(4, 1),
              att_context_style="chunked_limited")
    return _tiny(**{**kw, **overrides})


# ---------------------------------------------------------------------------------------------------------------
# Golden parity


def _config_from_nemo(kw: dict) -> FastConformerConfig:
    return FastConformerConfig(
        feat_in=kw["feat_in"], d_model=kw["d_model"], n_heads=kw["n_heads"], n_layers=kw["n_layers"],
        ff_expansion=kw["ff_expansion_factor"], conv_kernel=kw["conv_kernel_size"], conv_norm=kw["conv_norm_type"],
        subsampling_factor=kw["subsampling_factor"], subsampling_channels=kw["subsampling_conv_channels"],
        causal_downsampling=kw["causal_downsampling"],
        conv_context="causal" if kw.get("conv_context_size") == "causal" else "symmetric",
        att_context_size=tuple(kw["att_context_size"]), att_context_style=kw["att_context_style"],
        global_tokens=kw.get("global_tokens", 0), xscaling=kw["xscaling"],
    )


@pytest.fixture(scope="module")
def golden() -> dict:
    assert GOLDEN.is_file(), "run: .peers/nemo/bin/python tests/fixtures/make_fastconformer_golden.py"
    return torch.load(GOLDEN, weights_only=True)


@pytest.mark.parametrize("variant", ["offline", "streaming", "local"])
def test_matches_nemo_golden(golden: dict, variant: str) -> None:
    v = golden["variants"][variant]
    enc = FastConformerEncoder(_config_from_nemo(v["nemo_kwargs"])).eval()
    sd = {k: t.float() if t.is_floating_point() else t for k, t in v["state_dict"].items()}
    enc.load_state_dict(nemo_state_dict_to_speechkit(sd), strict=True)
    # The local (sliding-window) variant must match with the dense mask and with the blockwise long-input path.
    for min_len in ([None, 0] if variant == "local" else [None]):
        enc.blockwise_min_len, enc.block_size = min_len, 4
        with torch.no_grad():
            y, y_lens = enc(golden["feats"].float(), golden["feat_lens"])
        assert y_lens.tolist() == v["out_lens"].tolist()
        assert y.shape == v["out"].shape
        for i, n in enumerate(y_lens.tolist()):
            torch.testing.assert_close(y[i, :n], v["out"][i, :n], rtol=1e-4, atol=1e-4)
            assert (y[i, n:] == 0).all()


def test_nemo_mapping_errors() -> None:
    with pytest.raises(KeyError, match="layers.0.mystery.weight"):
        nemo_state_dict_to_speechkit({"layers.0.mystery.weight": torch.zeros(1)})
    sd = {"encoder.pre_encode.out.bias": torch.zeros(3), "decoder.x": torch.zeros(1)}
    assert list(nemo_state_dict_to_speechkit(sd, prefix="encoder.")) == ["subsampling.out.bias"]


# ---------------------------------------------------------------------------------------------------------------
# Presets and shapes


@pytest.mark.parametrize("name", ["tiny", "small", "medium", "large"])
def test_preset_parameter_counts_match_nemo(name: str) -> None:
    with torch.device("meta"):  # no memory, no init time: only the shapes matter
        enc = FastConformerEncoder(FastConformerConfig.preset(name))
    n = sum(p.numel() for p in enc.parameters())
    assert abs(n - NEMO_PARAMS[name]) <= 0.01 * NEMO_PARAMS[name], (name, n)


def test_tiny_shapes_and_lengths() -> None:
    enc = FastConformerEncoder(FastConformerConfig.preset("tiny")).eval()
    x_lens = torch.tensor([200, 121, 8, 1])
    with torch.no_grad():
        y, y_lens = enc(torch.randn(4, 80, 200), x_lens)
    assert y.shape == (4, 25, 64) and y.dtype == torch.float32
    assert y_lens.tolist() == [subsampled_lengths(int(n)) for n in x_lens] == [25, 16, 1, 1]
    assert torch.isfinite(y).all()


def test_rejects_time_major_input() -> None:
    enc = _tiny()
    with pytest.raises(ValueError, match=r"\(B, 80, T\)"):
        enc(torch.randn(2, 100, 80), torch.tensor([100, 100]))


# ---------------------------------------------------------------------------------------------------------------
# Invariants


@pytest.mark.parametrize("make", [_tiny, _streaming, lambda: _tiny(att_context_size=(3, 3), global_tokens=1)],
                         ids=["offline", "streaming", "local+global"])
def test_batched_equals_single(make) -> None:
    enc = make()
    lengths = [171, 96, 23, 5]
    torch.manual_seed(1)
    x = torch.full((4, 80, 171), -3.0)  # junk padding
    singles = []
    with torch.no_grad():
        for i, n in enumerate(lengths):
            xi = torch.randn(1, 80, n)
            x[i, :, :n] = xi[0]
            singles.append(enc(xi, torch.tensor([n]))[0][0])
        y, y_lens = enc(x, torch.tensor(lengths))
    for i, n in enumerate(y_lens.tolist()):
        assert n == singles[i].size(0)
        torch.testing.assert_close(y[i, :n], singles[i], rtol=1e-4, atol=1e-4)


def test_sdpa_equals_explicit_softmax() -> None:
    for make in (_tiny, _streaming):
        enc = make()
        x, lens = torch.randn(3, 80, 130), torch.tensor([130, 77, 30])
        with torch.no_grad():
            a, _ = enc(x, lens)
            for layer in enc.layers:
                layer.att.use_sdpa = False
            b, _ = enc(x, lens)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n", [1, 2, 8, 9, 16])
def test_short_inputs_no_nan(n: int) -> None:
    for make in (_tiny, _streaming, lambda: _tiny(att_context_size=(2, 2), global_tokens=1)):
        enc = make()
        with torch.no_grad():
            y, y_lens = enc(torch.randn(2, 80, n), torch.tensor([n, 1]))
        assert torch.isfinite(y).all()
        assert y_lens.tolist() == [enc.output_lengths(n), enc.output_lengths(1)]


def test_gradients_flow() -> None:
    enc = _tiny().train()
    x = torch.randn(2, 80, 90, requires_grad=True)
    y, y_lens = enc(x, torch.tensor([90, 60]))
    keep = (torch.arange(y.size(1))[None, :] < y_lens[:, None])[..., None]
    (y * keep).pow(2).mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def _receptive_check(enc: FastConformerEncoder, last_seen_feature) -> None:
    """Output frame t must not change when feature frames after ``last_seen_feature(t)`` change, and must change
    when that frame itself changes (so the check is not vacuous)."""
    torch.manual_seed(3)
    n = 160
    x = torch.randn(1, 80, n)
    lens = torch.tensor([n])
    with torch.no_grad():
        y, y_lens = enc(x, lens)
        for t in (0, 2, 5, 9, 14):
            last = last_seen_feature(t)
            if last + 1 >= n:
                continue
            x2 = x.clone()
            x2[:, :, last + 1:] = torch.randn(1, 80, n - last - 1) * 3
            torch.testing.assert_close(enc(x2, lens)[0][:, : t + 1], y[:, : t + 1], rtol=1e-5, atol=1e-5)
            x3 = x.clone()
            x3[:, :, last] += 2.0
            assert not torch.allclose(enc(x3, lens)[0][:, t], y[:, t], atol=1e-5)


def test_streaming_variant_sees_no_more_than_its_chunk() -> None:
    # chunked_limited (4, 1): chunks of 2 encoder frames; frame t sees up to the end of its chunk, e = t | 1, in
    # every layer (chunks do not compound). Causal subsampling: encoder frame e sees feature frames <= 8 e.
    _receptive_check(_streaming(), lambda t: 8 * ((t // 2) * 2 + 1))


def test_regular_lookahead_compounds_over_layers() -> None:
    # regular (3, 1) with causal conv and subsampling: each of the 2 layers looks 1 frame ahead.
    enc = _streaming(att_context_size=(3, 1), att_context_style="regular")
    _receptive_check(enc, lambda t: 8 * (t + enc.cfg.n_layers * 1))


def test_causal_conv_cache_equals_full_sequence() -> None:
    # The streaming hook: running the causal conv module chunk by chunk with its cache gives the offline result.
    torch.manual_seed(4)
    conv = ConvModule(16, 5, "layer_norm", causal=True).eval()
    x = torch.randn(2, 11, 16)
    with torch.no_grad():
        want = conv(x)
        cache = torch.zeros(2, 16, 4)
        parts = []
        for s in range(0, 11, 3):
            y, cache = conv(x[:, s: s + 3], cache=cache)
            parts.append(y)
    torch.testing.assert_close(torch.cat(parts, dim=1), want)


def test_multiple_context_options() -> None:
    enc = _tiny(att_context_size=[(4, 1), (4, 0)], att_context_style="chunked_limited",
                att_context_probs=[0.0, 1.0], conv_context="causal", causal_downsampling=True)
    assert enc.att_context.right == 1  # evaluation uses the first option
    assert enc.train()._pick_context().right == 0  # training draws by att_context_probs
    enc.eval().set_att_context_size(8, 3)
    assert (enc.att_context.left, enc.att_context.right) == (8, 3)


# ---------------------------------------------------------------------------------------------------------------
# Config


@pytest.mark.parametrize("field, value, words", [
    ("conv_norm", "group_norm", "conv_norm"),
    ("conv_context", "future", "conv_context"),
    ("conv_kernel", 8, "conv_kernel"),
    ("n_heads", 3, "d_model"),
    ("subsampling_factor", 6, "subsampling_factor"),
    ("att_context_style", "banded", "att_context_style"),
    ("att_context_size", (-2, 0), "att_context_size"),
    ("att_context_size", (5, 1), "att_context_size"),
    ("att_context_size", "wide", "att_context_size"),
    ("att_context_probs", [0.5], "att_context_probs"),
    ("global_tokens", -1, "global_tokens"),
    ("dropout", 1.5, "dropout"),
    ("n_layers", 0, "n_layers"),
])
def test_config_errors_name_the_field(field: str, value: object, words: str) -> None:
    kw = {"att_context_style": "chunked_limited"} if value == (5, 1) else {}
    with pytest.raises(FastConformerConfigError, match=f"FastConformerConfig.{words}"):
        FastConformerConfig(**{field: value, **kw})


def test_presets() -> None:
    assert (FastConformerConfig.preset("large").d_model, FastConformerConfig.preset("large").n_layers) == (512, 17)
    assert FastConformerConfig.preset("medium", dropout=0.0).dropout == 0.0
    with pytest.raises(FastConformerConfigError, match="preset 'huge'"):
        FastConformerConfig.preset("huge")
    assert FastConformerConfig(att_context_size=[[70, 13], [70, 0]]).att_context_options == [(70, 13), (70, 0)]


def test_long_input_blockwise_equals_dense() -> None:
    # Long audio with limited context + a global token: the memory-efficient blockwise attention gives the dense
    # result (here 2000 feature frames -> 250 encoder frames, blocks of 16).
    enc = _tiny(att_context_size=(8, 8), global_tokens=1)
    x, lens = torch.randn(2, 80, 2000), torch.tensor([2000, 1333])
    with torch.no_grad():
        enc.blockwise_min_len = None
        dense, _ = enc(x, lens)
        enc.blockwise_min_len, enc.block_size = 64, 16
        blocks, _ = enc(x, lens)
    torch.testing.assert_close(blocks, dense, rtol=1e-4, atol=1e-4)
