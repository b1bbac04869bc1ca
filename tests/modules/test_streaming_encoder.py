"""Cache-aware streaming FastConformer: streaming == offline for any split, batching, state handling, geometry,
multi-lookahead sampling and configuration errors (tiny random-init models in eval mode)."""

from __future__ import annotations

import random

import pytest
import torch

from speechkit.modules.fastconformer import FastConformerConfig, FastConformerConfigError, FastConformerEncoder
from speechkit.modules.streaming import EncoderStreamState, StreamingGeometry
from speechkit.modules.subsampling import DwStridingSubsampling

STREAMING = dict(causal_downsampling=True, conv_context="causal", conv_norm="layer_norm",
                 att_context_style="chunked_limited")


def _encoder(att_context_size: object = (4, 1), **overrides: object) -> FastConformerEncoder:
    torch.manual_seed(0)
    cfg = FastConformerConfig.preset("tiny", subsampling_channels=16,
                                     **{**STREAMING, "att_context_size": att_context_size, **overrides})
    enc = FastConformerEncoder(cfg)
    with torch.no_grad():  # non-zero biases, so padding or a missing cache cannot hide behind a neutral value
        for name, p in enc.named_parameters():
            if "pos_bias" in name or name.endswith("bias"):
                p.normal_(0.0, 0.2)
    return enc.eval()


def _offline(enc: FastConformerEncoder, mel: torch.Tensor, lens: list[int]) -> list[torch.Tensor]:
    with torch.no_grad():
        y, y_lens = enc(mel, torch.tensor(lens))
    return [y[b, : int(y_lens[b])] for b in range(len(lens))]


def _run(enc: FastConformerEncoder, mel: torch.Tensor, lens: list[int], splits: list[list[int]],
         finals: list[list[bool]] | None = None) -> tuple[list[torch.Tensor], EncoderStreamState]:
    """Feed row b the pieces splits[call][b] (frame counts), then a final empty call; concatenate each row's y."""
    bsz = len(lens)
    state = enc.init_state(bsz)
    pos, outs = [0] * bsz, [[] for _ in range(bsz)]
    calls = [(n, f) for n, f in zip(splits, finals or [[False] * bsz] * len(splits), strict=True)] + [([0] * bsz, [True] * bsz)]
    with torch.no_grad():
        for n, fin in calls:
            x = torch.zeros(bsz, mel.size(1), max(max(n), 1))
            for b in range(bsz):
                x[b, :, : n[b]] = mel[b, :, pos[b]: pos[b] + n[b]]
            y, y_lens, state = enc.streaming_forward(x, torch.tensor(n), state, final=torch.tensor(fin))
            assert y.size(0) == bsz and (y.size(1) == int(y_lens.max()) if bsz else True)
            for b in range(bsz):
                outs[b].append(y[b, : int(y_lens[b])])
                assert not y[b, int(y_lens[b]):].any()  # zero beyond each length
                pos[b] += n[b]
    assert pos == lens
    return [torch.cat(o) for o in outs], state


def _even_splits(total: int, step: int) -> list[list[int]]:
    return [[min(step, total - s)] for s in range(0, total, step)]


# ---------------------------------------------------------------------------------------------------------------
# Streaming == offline


@pytest.mark.parametrize("context, step", [
    ((4, 1), 1), ((4, 1), 9), ((4, 1), 16), ((4, 1), 23), ((4, 1), 1000),  # 9 + 16 k mel frames per chunk
    ((8, 3), 7), ((8, 3), 32), ((8, 3), 1000),  # 25 + 32 k
    ((0, 2), 24), ((0, 2), 50),  # no left context: no attention cache at all
    ((6, 0), 8), ((6, 0), 13),  # chunks of one encoder frame: fully causal
])
def test_one_stream_equals_offline(context: tuple[int, int], step: int) -> None:
    enc = _encoder(context)
    torch.manual_seed(1)
    total = 101  # first chunk + later chunks + a partial last chunk for every context here
    mel = torch.randn(1, 80, total)
    (got,), state = _run(enc, mel, [total], _even_splits(total, step))
    (want,) = _offline(enc, mel, [total])
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert bool(state.finished.all()) and int(state.mel_buffer_len[0]) == 0


@pytest.mark.parametrize("total", [1, 2, 7, 8, 9, 10, 24, 25, 26, 41])
def test_lengths_around_chunk_boundaries(total: int) -> None:
    # (4, 1): chunks of 2 encoder frames = 9 mel frames first, then 16 per chunk.
    enc = _encoder((4, 1))
    torch.manual_seed(2)
    mel = torch.randn(1, 80, total)
    (got,), _ = _run(enc, mel, [total], _even_splits(total, 5))
    (want,) = _offline(enc, mel, [total])
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_three_streams_batched_with_ragged_pieces_and_idle_rows() -> None:
    enc = _encoder((8, 3))
    rng = random.Random(0)
    lens = [150, 37, 88]
    torch.manual_seed(3)
    mel = torch.randn(3, 80, max(lens))
    splits, finals, pos = [], [], [0, 0, 0]
    while pos != lens:
        # 0 = the row receives nothing this call (it just waits)
        n = [min(rng.choice([0, 0, 1, 8, 25, 32, 60]), lens[b] - pos[b]) for b in range(3)]
        pos = [p + k for p, k in zip(pos, n, strict=True)]
        splits.append(n)
        finals.append([p == total and rng.random() < 0.5 for p, total in zip(pos, lens, strict=True)])  # some rows end early
    assert any(0 in n for n in splits)
    got, _ = _run(enc, mel, lens, splits, finals)
    for g, w in zip(got, _offline(enc, mel, lens), strict=True):
        assert g.shape == w.shape
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


def test_batch_norm_conv_streams_too() -> None:
    enc = _encoder((4, 1), conv_norm="batch_norm")
    with torch.no_grad():
        for m in enc.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_(0.0, 0.3)
                m.running_var.uniform_(0.5, 1.5)
    torch.manual_seed(4)
    mel = torch.randn(1, 80, 70)
    (got,), _ = _run(enc, mel, [70], _even_splits(70, 13))
    torch.testing.assert_close(got, _offline(enc, mel, [70])[0], rtol=1e-5, atol=1e-5)


def test_chosen_lookahead_streams() -> None:
    # A multi-lookahead model streams at whichever trained context is selected.
    enc = _encoder([(4, 1), (4, 0), (6, 2)], att_context_probs=[0.2, 0.3, 0.5])
    torch.manual_seed(5)
    mel = torch.randn(1, 80, 90)
    for left, right in [(4, 0), (6, 2)]:
        enc.set_att_context_size(left, right)
        (got,), _ = _run(enc, mel, [90], _even_splits(90, 11))
        torch.testing.assert_close(got, _offline(enc, mel, [90])[0], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# Timing of the output, and the state


def test_frames_come_out_when_their_chunk_is_complete() -> None:
    enc = _encoder((8, 3))  # chunks of 4 frames: 25 mel frames first, then 32
    geo = enc.streaming_geometry()
    assert (geo.chunk_frames, geo.first_chunk_mel_frames, geo.chunk_mel_frames) == (4, 25, 32)
    mel = torch.randn(1, 80, 200)
    state = enc.init_state(1)
    fed = 0
    with torch.no_grad():
        for n, want in [(24, 0), (1, 4), (31, 0), (1, 4), (64, 8), (10, 0)]:
            _, y_lens, state = enc.streaming_forward(mel[:, :, fed: fed + n], torch.tensor([n]), state)
            fed += n
            assert int(y_lens[0]) == want, (fed, n)
        assert int(state.mel_buffer_len[0]) == 10 and int(state.frames_out[0]) == 16
        _, y_lens, state = enc.streaming_forward(mel[:, :, :0], torch.tensor([0]), state, final=True)
    # 131 mel frames make 18 encoder frames offline: the flush returns the last partial chunk (2 frames).
    assert int(y_lens[0]) == int(enc.output_lengths(131)) - 16 == 2


def test_state_shapes_and_input_state_is_not_modified() -> None:
    enc = _encoder((8, 3))
    state = enc.init_state(2)
    cfg = enc.cfg
    assert state.att_cache.shape == (cfg.n_layers, 2, 8, cfg.d_model)
    assert state.conv_cache.shape == (cfg.n_layers, 2, cfg.d_model, cfg.conv_kernel - 1)
    # One input frame per stride-2 stage; causal padding maps 80 mel bins to 41, then 21.
    assert [tuple(t.shape) for t in state.sub_cache] == [(2, 1, 1, 80), (2, 16, 1, 41), (2, 16, 1, 21)]
    assert state.mel_buffer.shape == (2, 80, 0) and state.batch_size == 2
    torch.manual_seed(6)
    mel = torch.randn(2, 80, 60)
    with torch.no_grad():
        _, _, s1 = enc.streaming_forward(mel[:, :, :30], torch.tensor([30, 27]), state)
        snapshot = [t.clone() for t in (s1.att_cache, s1.conv_cache, s1.mel_buffer, *s1.sub_cache)]
        y_a, _, _ = enc.streaming_forward(mel[:, :, 30:], torch.tensor([30, 30]), s1)
        y_b, _, _ = enc.streaming_forward(mel[:, :, 30:], torch.tensor([30, 30]), s1)  # replay from the same state
    for before, after in zip(snapshot, (s1.att_cache, s1.conv_cache, s1.mel_buffer, *s1.sub_cache), strict=True):
        assert torch.equal(before, after)
    assert torch.equal(y_a, y_b)
    assert s1.att_cache_len.tolist() == [4, 4]  # one chunk of 4 frames cached so far, of 8
    assert s1.mel_buffer_len.tolist() == [5, 2]


def test_stack_unstack_round_trip_and_independent_rows() -> None:
    enc = _encoder((4, 1))
    torch.manual_seed(7)
    lens = [70, 45]
    mel = torch.randn(2, 80, 70)
    with torch.no_grad():
        # Two streams run alone for a while ...
        alone = [enc.streaming_forward(mel[b: b + 1, :, :n], torch.tensor([n]), enc.init_state(1))
                 for b, n in enumerate([30, 20])]
        batched = EncoderStreamState.stack([s for _, _, s in alone])
        assert batched.batch_size == 2 and batched.mel_buffer.shape[2] == max(int(s.mel_buffer_len[0])
                                                                                for _, _, s in alone)
        again = EncoderStreamState.stack(batched.unstack())
        for name in ("att_cache", "att_cache_len", "conv_cache", "mel_buffer", "mel_buffer_len", "mel_seen",
                     "frames_out", "finished"):
            assert torch.equal(getattr(again, name), getattr(batched, name)), name
        # ... then are decoded together to the end.
        rest = torch.zeros(2, 80, 40)
        rest[0] = mel[0, :, 30:70]
        rest[1, :, :25] = mel[1, :, 20:45]
        y, y_lens, state = enc.streaming_forward(rest, torch.tensor([40, 25]), batched, final=True)
    want = _offline(enc, mel, lens)
    for b in range(2):
        got = torch.cat([alone[b][0][0, : int(alone[b][1][0])], y[b, : int(y_lens[b])]])
        torch.testing.assert_close(got, want[b], rtol=1e-5, atol=1e-5)
    # Splitting the finished batch gives one-stream states with their own rows.
    parts = state.unstack()
    assert [p.batch_size for p in parts] == [1, 1] and all(bool(p.finished[0]) for p in parts)
    assert torch.equal(parts[1].att_cache[:, 0], state.att_cache[:, 1])


def test_stack_refuses_states_of_other_contexts() -> None:
    a = _encoder((4, 1)).init_state(1)
    b = _encoder((8, 3)).init_state(1)
    with pytest.raises(ValueError, match="different cache shapes"):
        EncoderStreamState.stack([a, b])
    with pytest.raises(ValueError, match="no states"):
        EncoderStreamState.stack([])


def test_flushed_rows_take_no_more_frames() -> None:
    enc = _encoder((4, 1))
    state = enc.init_state(2)
    mel = torch.randn(2, 80, 20)
    with torch.no_grad():
        _, y_lens, state = enc.streaming_forward(mel, torch.tensor([20, 12]), state, final=torch.tensor([True, False]))
        assert y_lens.tolist() == [int(enc.output_lengths(20)), 2]
        _, y_lens, state = enc.streaming_forward(mel, torch.tensor([0, 3]), state)  # row 0 idles: fine
        assert y_lens.tolist() == [0, 0]
        with pytest.raises(ValueError, match="flushed"):
            enc.streaming_forward(mel, torch.tensor([1, 0]), state)


# ---------------------------------------------------------------------------------------------------------------
# Geometry, multi-lookahead, errors


def test_geometry_matches_the_cache_aware_numbers() -> None:
    g = StreamingGeometry.from_context(70, 13, 8)
    assert (g.chunk_frames, g.first_chunk_mel_frames, g.chunk_mel_frames) == (14, 105, 112)
    assert g.lookahead_s == pytest.approx(1.04) and g.chunk_s == pytest.approx(1.12)
    g = StreamingGeometry.from_context(70, 4, 8, frontend_lookahead_s=0.016)
    assert g.algorithmic_latency_s == pytest.approx(0.416) and g.lookahead_s == pytest.approx(0.32)
    enc = _encoder((8, 3))
    assert enc.streaming_geometry().first_chunk_mel_frames == int(8 * 3 + 1)
    assert int(enc.output_lengths(enc.streaming_geometry().first_chunk_mel_frames)) == 4


def test_multi_lookahead_training_samples_every_option_with_torch_rng() -> None:
    options = [(4, 1), (4, 0), (6, 2)]
    enc = _encoder(options, att_context_probs=[0.2, 0.3, 0.5])
    assert (enc.att_context.left, enc.att_context.right) == (4, 1)  # evaluation: the first option
    enc.train()
    torch.manual_seed(11)
    draws = [enc._pick_context() for _ in range(300)]
    counts = {o: sum((c.left, c.right) == o for c in draws) for o in options}
    assert all(counts[o] > 0 for o in options)
    assert counts[(6, 2)] > counts[(4, 1)]  # 0.5 against 0.2
    torch.manual_seed(11)
    assert [enc._pick_context() for _ in range(300)] == draws  # seeded by torch's RNG
    assert all(enc.eval()._pick_context() == enc.att_context for _ in range(5))
    # A training forward pass runs with whichever option was drawn (all share the weights).
    enc.train()
    y, y_lens = enc(torch.randn(2, 80, 50), torch.tensor([50, 33]))
    assert y.shape == (2, int(enc.output_lengths(50)), 64) and torch.isfinite(y).all()


def test_yaml_style_list_of_lists_is_accepted() -> None:
    cfg = FastConformerConfig(att_context_size=[[70, 4], [70, 13], [70, 1], [70, 0]],
                              att_context_probs=[0.25] * 4, att_context_style="chunked_limited")
    assert cfg.att_context_options == [(70, 4), (70, 13), (70, 1), (70, 0)]


@pytest.mark.parametrize("overrides, field", [
    (dict(causal_downsampling=False), "causal_downsampling"),
    (dict(conv_context="symmetric"), "conv_context"),
    (dict(att_context_style="regular"), "att_context_style"),
    (dict(att_context_size=(-1, 1)), "att_context_size"),
])
def test_unstreamable_configs_are_refused(overrides: dict, field: str) -> None:
    enc = _encoder(**overrides) if "att_context_size" not in overrides else _encoder(overrides["att_context_size"])
    for call in (lambda: enc.init_state(1), enc.streaming_geometry):
        with pytest.raises(FastConformerConfigError, match=field):
            call()


def test_bad_inputs_are_refused() -> None:
    enc = _encoder((4, 1))
    state = enc.init_state(2)
    with pytest.raises(ValueError, match="features"):
        enc.streaming_forward(torch.randn(2, 40, 10), torch.tensor([10, 10]), state)
    with pytest.raises(ValueError, match="2 streams"):
        enc.streaming_forward(torch.randn(3, 80, 10), torch.tensor([10, 10, 10]), state)
    with pytest.raises(ValueError, match="x_lens"):
        enc.streaming_forward(torch.randn(2, 80, 10), torch.tensor([11, 10]), state)
    with pytest.raises(ValueError, match="final"):
        enc.streaming_forward(torch.randn(2, 80, 10), torch.tensor([10, 10]), state, final=torch.tensor([True]))
    enc.set_att_context_size(8, 3)
    with pytest.raises(ValueError, match="set_att_context_size"):
        enc.streaming_forward(torch.randn(2, 80, 10), torch.tensor([10, 10]), state)


def test_subsampling_stream_step_alignment_rule() -> None:
    sub = DwStridingSubsampling(80, 32, 8, 16, causal=True).eval()
    cache = tuple(torch.zeros(1, *s) for s in sub.stream_cache_shapes())
    with pytest.raises(ValueError, match="alignment"):  # a first, non-final step needs an odd frame count
        sub.stream_step(torch.randn(1, 8, 80), torch.tensor([8]), cache, torch.tensor([True]), torch.tensor([False]))
    with pytest.raises(ValueError, match="causal"):
        DwStridingSubsampling(80, 32, 8, 16).stream_step(torch.randn(1, 9, 80), torch.tensor([9]), cache,
                                                          torch.tensor([True]), torch.tensor([False]))
