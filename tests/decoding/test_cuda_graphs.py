"""GraphedGreedyDecoder: its static-buffer loop bodies give greedy_transducer_decode's decisions (run eagerly on CPU
here), reused across batches of any shape; on a GPU (``-m cuda``) the captured graphs give the same again."""

from __future__ import annotations

import math

import pytest
import torch

from speechkit.decoding import GraphedGreedyDecoder, GreedyOptions, Hypothesis, greedy_transducer_decode
from speechkit.decoding.reference import greedy_transducer_reference
from speechkit.losses.layout import JointLayout
from speechkit.modules.asr import ASRModelConfig, TransducerASR
from speechkit.modules.fastconformer import FastConformerConfig

V = 12


def assert_same(got: list[Hypothesis], want: list[Hypothesis], score_tol: float = 1e-9) -> None:
    assert len(got) == len(want)
    for b, (x, y) in enumerate(zip(got, want, strict=True)):
        assert (x.tokens, x.frames, x.durations, x.num_frames) == (y.tokens, y.frames, y.durations, y.num_frames), (
            f"utterance {b} differs")
        assert math.isclose(x.score, y.score, rel_tol=score_tol, abs_tol=score_tol), f"utterance {b}: score"


def test_reused_across_shapes_equals_reference(layout, make_model, ragged_batch):
    """One decoder, batches that shrink and grow: padding rows and stale buffer contents never leak into results,
    and the buffers are reallocated only when a batch outgrows them."""
    pred, joint = make_model(layout, seed=4)
    decoder = GraphedGreedyDecoder(pred, joint)
    assert not decoder.capture  # CPU: the bodies run eagerly
    for i, (batch, frames) in enumerate([(3, 20), (1, 7), (5, 30), (2, 12), (5, 130), (4, 9)]):
        f, lengths = ragged_batch(batch, frames, seed=40 + i)
        assert_same(decoder(f, lengths), greedy_transducer_reference(f, lengths, pred, joint))
    # (3, 20) allocates (3, 128); (5, 30) grows the batch; (5, 130) the frames (to 256); the rest fit
    assert decoder.captures == 3
    assert decoder._loop is not None and (decoder._loop.batch, decoder._loop.frames) == (5, 256)


@pytest.mark.parametrize("max_symbols", [1, 3])
@pytest.mark.parametrize("name", ["rnnt", "tdt0", "multiblank"])
def test_max_symbols_guard(name, max_symbols, make_model, ragged_batch):
    """Never-blank models: the guard moves time on after max_symbols labels per frame, as in label_loop."""
    layout = {"rnnt": JointLayout.rnnt(V), "tdt0": JointLayout.tdt(V, (0, 1, 2)),
              "multiblank": JointLayout.multiblank(V, (2, 4))}[name]
    duration_bias = [30.0, 0.0, 0.0] if name == "tdt0" else None
    pred, joint = make_model(layout, seed=1, blank_bias=-30.0, duration_bias=duration_bias)
    f, lengths = ragged_batch(4, 9, seed=1)
    options = GreedyOptions(max_symbols=max_symbols)
    hyps = GraphedGreedyDecoder(pred, joint, options)(f, lengths)
    assert_same(hyps, greedy_transducer_reference(f, lengths, pred, joint, options))
    for h, n in zip(hyps, lengths.tolist(), strict=True):
        assert h.frames == [t for t in range(n) for _ in range(max_symbols)]


@pytest.mark.parametrize("big_blank_skip", [True, False])
def test_multiblank_skip_option(big_blank_skip, make_model, ragged_batch):
    pred, joint = make_model(JointLayout.multiblank(V, (2, 4, 8)), seed=6)
    f, lengths = ragged_batch(6, 40, seed=6)
    options = GreedyOptions(big_blank_skip=big_blank_skip)
    assert_same(GraphedGreedyDecoder(pred, joint, options)(f, lengths),
                greedy_transducer_reference(f, lengths, pred, joint, options))


def test_float32(layout, make_model, ragged_batch):
    pred, joint = make_model(layout, seed=2, dtype=torch.float32)
    f, lengths = ragged_batch(6, 24, seed=2, dtype=torch.float32)
    assert_same(GraphedGreedyDecoder(pred, joint)(f, lengths),
                greedy_transducer_reference(f, lengths, pred, joint), score_tol=1e-4)


def test_inputs_checked(make_model, ragged_batch):
    pred, joint = make_model(JointLayout.rnnt(V))
    decoder = GraphedGreedyDecoder(pred, joint)
    assert decoder(torch.zeros(0, 5, 8, dtype=torch.float64), torch.zeros(0, dtype=torch.long)) == []
    f, lengths = ragged_batch(2, 10, seed=0)
    with pytest.raises(ValueError, match="encoder_lengths must lie in"):
        decoder(f, torch.tensor([3, 11]))
    with pytest.raises(ValueError, match="encoder_out must be"):
        decoder(f[0], lengths)
    with pytest.raises(ValueError, match="needs the modules on a CUDA device"):
        GraphedGreedyDecoder(pred, joint, capture=True)
    with pytest.raises(ValueError, match="cuda_graphs must be True or False"):
        GreedyOptions(cuda_graphs="yes")  # type: ignore[arg-type]


def test_option_is_ignored_on_cpu(make_model, ragged_batch):
    """``GreedyOptions(cuda_graphs=True)`` on CPU tensors decodes the ordinary way (no decoder is kept)."""
    cfg = ASRModelConfig(encoder=FastConformerConfig.preset("tiny"), vocab_size=16, pred_hidden=32, joint_hidden=32)
    model = TransducerASR.from_config(cfg).eval()
    audio, audio_lens = torch.randn(2, 8000), torch.tensor([8000, 5000])
    options = GreedyOptions(cuda_graphs=True)
    assert_same(model.decode(audio, audio_lens, options), model.decode(audio, audio_lens), score_tol=1e-5)
    assert "_graphed_decoder" not in model.__dict__
    pred, joint = make_model(JointLayout.tdt(V, (0, 1, 2, 3, 4)), seed=3)
    f, lengths = ragged_batch(3, 16, seed=3)
    assert_same(greedy_transducer_decode(f, lengths, pred, joint, options),
                greedy_transducer_decode(f, lengths, pred, joint))


@pytest.mark.cuda
def test_captured_graphs_equal_reference(layout, make_model, ragged_batch):
    """On a GPU: the captured bodies, replayed across batch shapes (with recapture on growth), give the CPU
    reference's decisions."""
    pred, joint = make_model(layout, seed=3)
    cuda_pred, cuda_joint = pred.cuda(), joint.cuda()
    decoder = GraphedGreedyDecoder(cuda_pred, cuda_joint)
    assert decoder.capture
    for i, (batch, frames) in enumerate([(8, 30), (2, 11), (8, 140), (1, 5)]):
        f, lengths = ragged_batch(batch, frames, seed=70 + i)
        reference = greedy_transducer_reference(f, lengths, pred, joint)
        assert_same(decoder(f.cuda(), lengths.cuda()), reference, score_tol=1e-6)
        assert_same(greedy_transducer_decode(f.cuda(), lengths.cuda(), cuda_pred, cuda_joint,
                                             GreedyOptions(cuda_graphs=True)), reference, score_tol=1e-6)
    assert decoder.captures == 2


@pytest.mark.cuda
def test_model_keeps_its_captured_decoder():
    """TransducerASR.decode_encoded captures once and reuses the graphs; the results equal the uncaptured loop."""
    cfg = ASRModelConfig(encoder=FastConformerConfig.preset("tiny"), vocab_size=16, pred_hidden=32, joint_hidden=32,
                         model_type="tdt")
    model = TransducerASR.from_config(cfg).cuda().eval()
    options = GreedyOptions(cuda_graphs=True)
    for n in (16000, 12000, 16000):
        audio = torch.randn(3, n, device="cuda")
        audio_lens = torch.tensor([n, n // 2, n // 3], device="cuda")
        assert_same(model.decode(audio, audio_lens, options), model.decode(audio, audio_lens), score_tol=1e-4)
    decoder = model.__dict__["_graphed_decoder"]
    assert decoder.capture and decoder.captures == 1
    import copy

    clone = copy.deepcopy(model)  # graphs do not copy; the clone captures its own when asked
    assert "_graphed_decoder" not in clone.__dict__
    assert_same(clone.decode(audio, audio_lens, options), model.decode(audio, audio_lens), score_tol=1e-4)


def test_new_weights_ask_for_a_new_decoder(make_model, ragged_batch):
    """The captured start state and gate table belong to the weights of capture time: after an optimizer-style
    in-place update the decoder no longer matches, and a fresh one decodes with the new weights."""
    pred, joint = make_model(JointLayout.tdt(V, (0, 1, 2, 3)), seed=6)
    decoder = GraphedGreedyDecoder(pred, joint)
    f, lengths = ragged_batch(3, 20, seed=61)
    decoder(f, lengths)
    device, dtype = f.device, next(joint.parameters()).dtype
    assert decoder.matches(GreedyOptions(), device, dtype)
    with torch.no_grad():
        pred.embed.weight.mul_(-1.5)
    assert not decoder.matches(GreedyOptions(), device, dtype)
    assert_same(GraphedGreedyDecoder(pred, joint)(f, lengths), greedy_transducer_reference(f, lengths, pred, joint))


def test_model_copies_leave_out_the_captured_decoder(make_model, ragged_batch):
    """copy.deepcopy of a model (EMA, checkpoint averaging) does not try to copy CUDA graphs: the kept decoder stays
    with the original."""
    import copy

    cfg = ASRModelConfig(encoder=FastConformerConfig.preset("tiny"), vocab_size=16, pred_hidden=32, joint_hidden=32)
    model = TransducerASR.from_config(cfg).eval()
    model.__dict__["_graphed_decoder"] = GraphedGreedyDecoder(model.prediction, model.joint)  # as decode_encoded keeps it
    clone = copy.deepcopy(model)
    assert "_graphed_decoder" not in clone.__dict__ and "_graphed_decoder" in model.__dict__
    audio, audio_lens = torch.randn(2, 8000), torch.tensor([8000, 5000])
    assert_same(clone.decode(audio, audio_lens), model.decode(audio, audio_lens), score_tol=0.0)
