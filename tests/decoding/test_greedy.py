"""Batched greedy decoding == per-utterance reference decoding, and the TDT / multi-blank / max_symbols rules."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from speechkit.decoding import GreedyOptions, Hypothesis, ctc_greedy_decode, greedy_transducer_decode
from speechkit.decoding.reference import ctc_greedy_reference, greedy_transducer_reference
from speechkit.losses.layout import JointLayout

V = 12


def assert_same(batched: list[Hypothesis], reference: list[Hypothesis], score_tol: float = 1e-9) -> None:
    assert len(batched) == len(reference)
    for b, (x, y) in enumerate(zip(batched, reference, strict=True)):
        assert x.tokens == y.tokens, f"utterance {b}: tokens differ"
        assert x.frames == y.frames, f"utterance {b}: frames differ"
        assert x.durations == y.durations, f"utterance {b}: durations differ"
        assert x.num_frames == y.num_frames
        assert math.isclose(x.score, y.score, rel_tol=score_tol, abs_tol=score_tol), f"utterance {b}: score"


class CountingJoint:
    """Counts joint evaluations (one per decision at batch size 1)."""

    def __init__(self, joint) -> None:
        self.joint, self.calls = joint, 0
        self.layout = joint.layout
        self.project_encoder, self.project_prediction = joint.project_encoder, joint.project_prediction
        self.parameters = joint.parameters

    def joint_after_projection(self, fp, gp):
        self.calls += 1
        return self.joint.joint_after_projection(fp, gp)


@pytest.mark.parametrize("batch", range(1, 9))
def test_batched_equals_per_utterance(layout, batch, make_model, ragged_batch):
    """Both forms of the loop (masked over the whole batch, and compacted to the rows that need work)."""
    for seed in range(3):
        pred, joint = make_model(layout, seed=seed)
        f, lengths = ragged_batch(batch, 24, seed=seed * 10 + batch)
        reference = greedy_transducer_reference(f, lengths, pred, joint)
        for compact in (False, True):
            assert_same(greedy_transducer_decode(f, lengths, pred, joint, GreedyOptions(compact=compact)), reference)


@pytest.mark.parametrize("max_symbols", [1, 2, 10])
def test_single_hypothesis_loop_equals_masked_loop(layout, max_symbols, make_model, ragged_batch):
    """One CPU hypothesis takes the plain-Python loop; it gives the masked loop's decisions and, summing the same
    log-probabilities in the same order and dtype (each computed in NumPy), the same scores up to rounding."""
    for dtype in (torch.float64, torch.float32):
        pred, joint = make_model(layout, seed=7, dtype=dtype)
        f, lengths = ragged_batch(6, 30, seed=7, dtype=dtype)
        for b in range(6):
            x, n = f[b:b + 1], lengths[b:b + 1]
            fast = greedy_transducer_decode(x, n, pred, joint, GreedyOptions(max_symbols=max_symbols))
            masked = greedy_transducer_decode(x, n, pred, joint, GreedyOptions(max_symbols=max_symbols, compact=False))
            assert_same(fast, masked, score_tol=1e-13 if dtype == torch.float64 else 1e-6)
            assert_same(fast, greedy_transducer_reference(x, n, pred, joint, GreedyOptions(max_symbols=max_symbols)),
                        score_tol=1e-9 if dtype == torch.float64 else 1e-4)


def test_random_models_emit_blanks_and_labels(layout, make_model, ragged_batch):
    """The equality tests mean something only if the argmax is sometimes blank and sometimes not."""
    pred, joint = make_model(layout, seed=0)
    f, lengths = ragged_batch(8, 40, seed=0)
    hyps = greedy_transducer_decode(f, lengths, pred, joint)
    frames = int(lengths.sum())
    per_frame = [n for h in hyps for n in Counter(h.frames).values()]  # labels emitted per frame with labels
    assert 0.05 * frames < len(per_frame) < 0.9 * frames  # some frames emit labels, others only a blank
    assert any(n < GreedyOptions().max_symbols for n in per_frame)  # label(s) then blank on the same frame
    if layout.kind == "tdt" and 0 in layout.durations:
        durations = [d for h in hyps for d in h.durations]
        assert 0 in durations and max(durations) > 0


def test_batch_independence(layout, make_model, ragged_batch):
    """Each utterance decodes the same alone and inside a batch (NeMo bug #16097 leaked TDT durations across it)."""
    pred, joint = make_model(layout, seed=5)
    f, lengths = ragged_batch(8, 30, seed=5)
    together = greedy_transducer_decode(f, lengths, pred, joint)
    alone = [greedy_transducer_decode(f[b:b + 1], lengths[b:b + 1], pred, joint)[0] for b in range(8)]
    assert_same(together, alone)


def test_float32(layout, make_model, ragged_batch):
    pred, joint = make_model(layout, seed=2, dtype=torch.float32)
    f, lengths = ragged_batch(6, 24, seed=2, dtype=torch.float32)
    assert_same(greedy_transducer_decode(f, lengths, pred, joint),
                greedy_transducer_reference(f, lengths, pred, joint), score_tol=1e-4)


@pytest.mark.parametrize("max_symbols", [1, 2, 3, 10])
@pytest.mark.parametrize("name", ["rnnt", "tdt0", "multiblank"])
def test_max_symbols_guard(name, max_symbols, make_model, ragged_batch):
    """Never-blank models: every frame emits exactly max_symbols labels, then the guard moves on one frame."""
    layout = {"rnnt": JointLayout.rnnt(V), "tdt0": JointLayout.tdt(V, (0, 1, 2)),
              "multiblank": JointLayout.multiblank(V, (2, 4))}[name]
    duration_bias = [30.0, 0.0, 0.0] if name == "tdt0" else None  # TDT: labels of duration 0, time never moves
    pred, joint = make_model(layout, seed=1, blank_bias=-30.0, duration_bias=duration_bias)
    f, lengths = ragged_batch(5, 9, seed=1)
    options = GreedyOptions(max_symbols=max_symbols)
    hyps = greedy_transducer_decode(f, lengths, pred, joint, options)
    assert_same(hyps, greedy_transducer_reference(f, lengths, pred, joint, options))
    # one at a time: the single-hypothesis loop applies the same guard
    assert_same([greedy_transducer_decode(f[b:b + 1], lengths[b:b + 1], pred, joint, options)[0] for b in range(5)],
                hyps)
    for h, n in zip(hyps, lengths.tolist(), strict=True):
        assert h.frames == [t for t in range(n) for _ in range(max_symbols)]
        if name == "tdt0":
            assert set(h.durations) <= {0}


def test_tdt_label_jump_ends_hypothesis(make_model):
    """Labels with duration 4 jump 4 frames; the jump that reaches T ends the utterance (and its label counts)."""
    layout = JointLayout.tdt(V, (0, 1, 2, 3, 4))
    pred, joint = make_model(layout, seed=3, blank_bias=-30.0, duration_bias=[0, 0, 0, 0, 30.0])
    f = torch.randn(3, 10, 8, dtype=torch.float64)
    hyps = greedy_transducer_decode(f, torch.tensor([10, 8, 1]), pred, joint)
    assert [h.frames for h in hyps] == [[0, 4, 8], [0, 4], [0]]
    assert [h.durations for h in hyps] == [[4, 4, 4], [4, 4], [4]]


def test_tdt_blank_with_duration_zero_advances_one_frame(make_model):
    """A blank predicted with duration 0 moves on one frame (else the decoder would loop on identical inputs)."""
    layout = JointLayout.tdt(V, (0, 1, 2, 3, 4))
    pred, joint = make_model(layout, seed=4, blank_bias=30.0, duration_bias=[30.0, 0, 0, 0, 0])
    counting = CountingJoint(joint)
    f = torch.randn(1, 13, 8, dtype=torch.float64)
    hyps = greedy_transducer_decode(f, torch.tensor([13]), pred, counting)
    assert hyps[0].tokens == [] and counting.calls == 13
    assert_same(hyps, greedy_transducer_reference(f, torch.tensor([13]), pred, joint))


@pytest.mark.parametrize("big_blank_skip", [True, False])
def test_multiblank_frame_skipping(big_blank_skip, make_model):
    """The big blank of duration 8 always wins: 17 frames take 3 decisions (0, 8, 16), or 17 without skipping."""
    layout = JointLayout.multiblank(V, (2, 4, 8))
    pred, joint = make_model(layout, seed=6, blank_bias=-30.0)
    with torch.no_grad():
        joint.out.bias[layout.big_blank_index(2)] = 60.0
    counting = CountingJoint(joint)
    f = torch.randn(1, 17, 8, dtype=torch.float64)
    options = GreedyOptions(big_blank_skip=big_blank_skip)
    hyps = greedy_transducer_decode(f, torch.tensor([17]), pred, counting, options)
    assert hyps[0].tokens == []
    assert counting.calls == (3 if big_blank_skip else 17)
    assert_same(hyps, greedy_transducer_reference(f, torch.tensor([17]), pred, joint, options))


def test_multiblank_skips_per_utterance(make_model, ragged_batch):
    """Big blanks are taken in the random models, and skipping changes the result (so it is really exercised)."""
    layout = JointLayout.multiblank(V, (2, 4, 8))
    pred, joint = make_model(layout, seed=7)
    f, lengths = ragged_batch(8, 40, seed=7)
    skip = greedy_transducer_decode(f, lengths, pred, joint)
    no_skip = greedy_transducer_decode(f, lengths, pred, joint, GreedyOptions(big_blank_skip=False))
    assert [h.tokens for h in skip] != [h.tokens for h in no_skip]
    assert_same(no_skip, greedy_transducer_reference(f, lengths, pred, joint, GreedyOptions(big_blank_skip=False)))


def test_empty_inputs(layout, make_model):
    pred, joint = make_model(layout, seed=0)
    assert greedy_transducer_decode(torch.zeros(0, 5, 8, dtype=torch.float64), torch.zeros(0, dtype=torch.long),
                                    pred, joint) == []
    hyps = greedy_transducer_decode(torch.zeros(2, 0, 8, dtype=torch.float64), torch.zeros(2, dtype=torch.long),
                                    pred, joint)
    assert [(h.tokens, h.num_frames, h.score) for h in hyps] == [([], 0, 0.0), ([], 0, 0.0)]


def test_bad_inputs(make_model):
    pred, joint = make_model(JointLayout.rnnt(V), seed=0)
    f = torch.randn(2, 5, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="encoder_lengths must lie in"):
        greedy_transducer_decode(f, torch.tensor([5, 6]), pred, joint)
    with pytest.raises(ValueError, match="encoder_lengths must be"):
        greedy_transducer_decode(f, torch.tensor([5]), pred, joint)
    with pytest.raises(ValueError, match="max_symbols"):
        GreedyOptions(max_symbols=0)


# ---------------------------------------------------------------------------------------------------------------
# CTC
# ---------------------------------------------------------------------------------------------------------------


def test_ctc_hand_example():
    b = 4
    ids = [1, 1, b, 1, 2, 2, b, b, 3, 3]
    log_probs = torch.full((1, 10, 5), -10.0)
    log_probs[0, torch.arange(10), torch.tensor(ids)] = -0.5
    (hyp,) = ctc_greedy_decode(log_probs, torch.tensor([9]))  # the last frame is padding
    assert (hyp.tokens, hyp.frames, hyp.durations) == ([1, 1, 2, 3], [0, 3, 4, 8], [2, 1, 2, 1])
    assert hyp.score == pytest.approx(-4.5)


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_ctc_batched_equals_reference(batch):
    gen = torch.Generator().manual_seed(batch)
    log_probs = torch.log_softmax(torch.randn(batch, 50, 4, generator=gen) * 2, dim=-1)  # few classes: repeats
    lengths = torch.randint(0, 51, (batch,), generator=gen)
    assert_same(ctc_greedy_decode(log_probs, lengths), ctc_greedy_reference(log_probs, lengths), score_tol=1e-5)
    assert_same(ctc_greedy_decode(log_probs, lengths, blank=0), ctc_greedy_reference(log_probs, lengths, blank=0),
                score_tol=1e-5)


@pytest.mark.cuda
def test_cuda_matches_cpu_reference(layout, make_model, ragged_batch):
    """On a GPU the masked loop (no host round-trips but the loop conditions) gives the CPU reference's tokens."""
    pred, joint = make_model(layout, seed=3)
    f, lengths = ragged_batch(8, 30, seed=3)
    reference = greedy_transducer_reference(f, lengths, pred, joint)
    pred, joint = pred.cuda(), joint.cuda()
    for compact in (False, True):
        hyps = greedy_transducer_decode(f.cuda(), lengths.cuda(), pred, joint, GreedyOptions(compact=compact))
        assert_same(hyps, reference, score_tol=1e-6)


def test_single_hypothesis_loop_bfloat16(layout, make_model, ragged_batch):
    """A bfloat16 model (no NumPy dtype) takes the plain-Python loop through float32 copies of its logits and still
    gives the masked loop's decisions. Its scores are float32 log-softmaxes, the masked loop's bfloat16 ones: they
    agree to bfloat16's precision."""
    pred, joint = make_model(layout, seed=3, dtype=torch.bfloat16)
    f, lengths = ragged_batch(3, 20, seed=3, dtype=torch.bfloat16)
    for b in range(3):
        x, n = f[b:b + 1], lengths[b:b + 1]
        fast = greedy_transducer_decode(x, n, pred, joint)
        masked = greedy_transducer_decode(x, n, pred, joint, GreedyOptions(compact=False))
        assert_same(fast, masked, score_tol=1e-2)  # bfloat16 keeps 8 bits of mantissa
        assert len(fast[0].tokens) > 0
