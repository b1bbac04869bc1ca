"""Chunk-by-chunk greedy decoding == offline batched greedy decoding, for every joint layout and CTC.

The chunkings cover one frame per chunk, sizes that divide and do not divide the length, empty chunks, and streams
decoded together while each is at a different place in its own chunk schedule (what ``Recognizer.decode`` does).
TDT and multi-blank models are biased towards long jumps so that skips carried past a chunk's end really happen
(the tests assert they do).
"""

from __future__ import annotations

import math
import random

import pytest
import torch

from speechkit.decoding import GreedyOptions, Hypothesis, ctc_greedy_decode, greedy_transducer_decode
from speechkit.decoding.streaming import DecoderStreamState, StreamingCTCDecoder, StreamingTransducerDecoder
from speechkit.losses.layout import JointLayout

V = 12


def assert_same(streamed: list[Hypothesis], offline: list[Hypothesis], score_tol: float = 1e-9) -> None:
    assert len(streamed) == len(offline)
    for b, (x, y) in enumerate(zip(streamed, offline, strict=True)):
        assert x.tokens == y.tokens, f"stream {b}: tokens differ"
        assert x.frames == y.frames, f"stream {b}: frames differ"
        assert x.durations == y.durations, f"stream {b}: durations differ"
        assert x.num_frames == y.num_frames
        assert math.isclose(x.score, y.score, rel_tol=score_tol, abs_tol=score_tol), f"stream {b}: score"


def run_chunked(decoder, x: torch.Tensor, lengths: torch.Tensor, schedules: list[list[int]],
                observe=None) -> DecoderStreamState:
    """Feed stream b the chunks ``schedules[b]`` (sizes summing to its length), all streams batched per step.

    A stream whose schedule is exhausted takes part with 0 frames (and ``final`` is set on its last chunk).
    """
    batch = x.shape[0]
    state = decoder.init_state(batch, x.device)
    pos = [0] * batch
    steps = max(len(s) for s in schedules)
    for step in range(steps):
        sizes = [s[step] if step < len(s) else 0 for s in schedules]
        width = max(sizes)
        chunk = x.new_zeros(batch, width, x.shape[2])
        for b, n in enumerate(sizes):
            chunk[b, :n] = x[b, pos[b]: pos[b] + n]
        final = torch.tensor([step == len(s) - 1 for s in schedules])
        state = decoder.decode_chunk(chunk, torch.tensor(sizes), state, final=final)
        pos = [p + n for p, n in zip(pos, sizes, strict=True)]
        if observe is not None:
            observe(state)
    assert pos == lengths.tolist()
    return state


def fixed(length: int, size: int) -> list[int]:
    sizes = [size] * (length // size) + ([length % size] if length % size else [])
    return sizes or [0]


def random_schedule(length: int, rng: random.Random, max_size: int = 6) -> list[int]:
    """Random chunk sizes in [0, max_size] (empty chunks included) summing to ``length``."""
    sizes, left = [], length
    while left > 0:
        n = min(rng.randint(0, max_size), left)
        sizes.append(n)
        left -= n
    return sizes or [0]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 24])
def test_fixed_chunks_equal_offline(layout, make_model, ragged_batch, size):
    for seed in range(2):
        pred, joint = make_model(layout, seed=seed)
        x, lengths = ragged_batch(4, 24, seed=seed)
        offline = greedy_transducer_decode(x, lengths, pred, joint)
        decoder = StreamingTransducerDecoder(pred, joint)
        state = run_chunked(decoder, x, lengths, [fixed(int(n), size) for n in lengths])
        assert_same(state.hypotheses(), offline)
        assert bool(state.finished.all())


def test_streams_at_different_places_equal_offline(layout, make_model, ragged_batch):
    """Each stream has its own random schedule (empty chunks too); both loop forms (masked, compacted)."""
    rng = random.Random(7)
    for seed in range(3):
        pred, joint = make_model(layout, seed=seed)
        x, lengths = ragged_batch(5, 30, seed=seed + 20)
        offline = greedy_transducer_decode(x, lengths, pred, joint)
        for compact in (False, True):
            decoder = StreamingTransducerDecoder(pred, joint, GreedyOptions(compact=compact))
            state = run_chunked(decoder, x, lengths, [random_schedule(int(n), rng) for n in lengths])
            assert_same(state.hypotheses(), offline)


@pytest.mark.parametrize("name,layout_", [
    ("tdt", JointLayout.tdt(V, (0, 1, 2, 3, 4))),
    ("tdt124", JointLayout.tdt(V, (1, 2, 4))),
    ("multiblank", JointLayout.multiblank(V, (2, 4, 8))),
])
def test_jumps_carried_past_chunk_ends(name, layout_, make_model, ragged_batch):
    """Durations / big blanks that reach beyond the chunk: the skip is carried into the next chunks."""
    if layout_.kind == "tdt":
        bias = [0.0] * (len(layout_.durations) - 1) + [3.0]  # favour the longest duration
        pred, joint = make_model(layout_, seed=1, duration_bias=bias)
    else:
        pred, joint = make_model(layout_, seed=1)
        with torch.no_grad():  # favour the 8-frame big blank
            joint.out.bias[layout_.big_blank_index(2)] += 3.0
    x, lengths = ragged_batch(4, 40, seed=3)
    offline = greedy_transducer_decode(x, lengths, pred, joint)
    for size in (1, 2, 3):
        pending = []
        decoder = StreamingTransducerDecoder(pred, joint)
        state = run_chunked(decoder, x, lengths, [fixed(int(n), size) for n in lengths],
                            observe=lambda s, seen=pending: seen.append(int(s.pending_skip.max())))
        assert_same(state.hypotheses(), offline)
        assert max(pending) >= 2, "no jump crossed a chunk end: the test would not test anything"


@pytest.mark.parametrize("max_symbols", [1, 2])
def test_max_symbols_guard_with_one_frame_chunks(make_model, ragged_batch, max_symbols):
    """A label-heavy model (TDT duration 0 favoured) hits the guard on many frames, with one frame per chunk."""
    layout_ = JointLayout.tdt(V, (0, 1, 2))
    pred, joint = make_model(layout_, seed=2, blank_bias=-4.0, duration_bias=[4.0, 0.0, 0.0])  # labels, d = 0
    x, lengths = ragged_batch(3, 20, seed=4)
    options = GreedyOptions(max_symbols=max_symbols)
    offline = greedy_transducer_decode(x, lengths, pred, joint, options)
    assert max(max(h.frames.count(f) for f in set(h.frames)) for h in offline if h.frames) == max_symbols
    decoder = StreamingTransducerDecoder(pred, joint, options)
    state = run_chunked(decoder, x, lengths, [fixed(int(n), 1) for n in lengths])
    assert_same(state.hypotheses(), offline)


def test_stack_unstack_and_per_stream_states(layout, make_model, ragged_batch):
    """Streams decoded one at a time, or regrouped into different batches at every step, give the same result."""
    pred, joint = make_model(layout, seed=0)
    x, lengths = ragged_batch(4, 18, seed=5)
    offline = greedy_transducer_decode(x, lengths, pred, joint)
    decoder = StreamingTransducerDecoder(pred, joint)
    streams = decoder.init_state(4).unstack()
    assert [s.batch_size for s in streams] == [1, 1, 1, 1]
    rng = random.Random(3)
    pos = [0] * 4
    while any(p < int(n) for p, n in zip(pos, lengths, strict=True)):
        group = [b for b in range(4) if rng.random() < 0.6] or [0]
        sizes = [min(rng.randint(1, 4), int(lengths[b]) - pos[b]) for b in group]
        chunk = x.new_zeros(len(group), max(sizes), x.shape[2])
        for i, (b, n) in enumerate(zip(group, sizes, strict=True)):
            chunk[i, :n] = x[b, pos[b]: pos[b] + n]
            pos[b] += n
        batched = DecoderStreamState.stack([streams[b] for b in group])
        out = decoder.decode_chunk(chunk, torch.tensor(sizes), batched).unstack()
        for b, s in zip(group, out, strict=True):
            streams[b] = s
    hyps = [s.hypotheses()[0] for s in streams]
    assert_same(hyps, offline)


def test_state_is_not_modified_and_finished_streams_refuse_frames(make_model, ragged_batch):
    pred, joint = make_model(JointLayout.rnnt(V), seed=0)
    x, lengths = ragged_batch(2, 10, seed=6)
    decoder = StreamingTransducerDecoder(pred, joint)
    s0 = decoder.init_state(2)
    s1 = decoder.decode_chunk(x[:, :5], torch.tensor([5, 5]), s0)
    assert s0.frames_seen.tolist() == [0, 0] and s0.tokens == [[], []] and s0.loop.t.tolist() == [0, 0]
    again = decoder.decode_chunk(x[:, :5], torch.tensor([5, 5]), s0)
    assert again.tokens == s1.tokens and again.frames == s1.frames
    done = decoder.decode_chunk(x[:, 5:], torch.tensor([5, 0]), s1, final=torch.tensor([False, True]))
    assert done.finished.tolist() == [False, True]
    decoder.decode_chunk(x[:, :0], torch.tensor([0, 0]), done)  # nothing new: allowed
    with pytest.raises(ValueError, match=r"streams \[1\] got frames after their final chunk"):
        decoder.decode_chunk(x[:, :2], torch.tensor([2, 2]), done)
    with pytest.raises(ValueError, match="holds 2 streams but the chunk has 3"):
        decoder.decode_chunk(torch.zeros(3, 1, x.shape[2], dtype=x.dtype), torch.tensor([1, 1, 1]), s1)


def test_reset_starts_a_new_segment(make_model, ragged_batch):
    """After reset the decoder restarts from the start id at the next frame; frames stay absolute."""
    pred, joint = make_model(JointLayout.tdt(V, (0, 1, 2, 3, 4)), seed=0)
    x, _ = ragged_batch(1, 30, seed=8)
    decoder = StreamingTransducerDecoder(pred, joint)
    state = decoder.decode_chunk(x[:, :12], torch.tensor([12]), decoder.init_state(1))
    state = decoder.reset(state)
    assert state.tokens == [[]] and state.frames_seen.tolist() == [12] and state.pending_skip.tolist() == [0]
    state = decoder.decode_chunk(x[:, 12:], torch.tensor([18]), state)
    fresh = greedy_transducer_decode(x[:, 12:], torch.tensor([18]), pred, joint)[0]
    assert state.tokens[0] == fresh.tokens
    assert state.frames[0] == [f + 12 for f in fresh.frames]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 40])
def test_ctc_chunks_equal_offline(size):
    gen = torch.Generator().manual_seed(size)
    # Few classes and peaked frames: long runs of one id that cross chunk ends.
    logits = torch.randn(4, 40, 5, generator=gen, dtype=torch.float64) * 3
    logits = logits.repeat_interleave(3, dim=1)[:, :40]
    log_probs = logits.log_softmax(-1)
    lengths = torch.tensor([40, 33, 1, 0])
    offline = ctc_greedy_decode(log_probs, lengths)
    decoder = StreamingCTCDecoder()
    state = run_chunked(decoder, log_probs, lengths, [fixed(int(n), size) for n in lengths])
    assert_same(state.hypotheses(), offline)
    if size < 40:
        crossing = [f // size != (f + d - 1) // size
                    for h in offline for f, d in zip(h.frames, h.durations, strict=True)]
        assert any(crossing), "no token run crossed a chunk end"
    rng = random.Random(size)
    state = run_chunked(decoder, log_probs, lengths, [random_schedule(int(n), rng) for n in lengths])
    assert_same(state.hypotheses(), offline)
