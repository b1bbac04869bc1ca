"""Prediction network, joint and CTC head: shapes, training == step-by-step, and equality with NeMo's modules.

The NeMo fixture (``fixtures/nemo_tiny.pt``, built by ``fixtures/make_nemo_fixtures.py`` with NeMo 3.0.0) holds
NeMo-named weights, NeMo's outputs and NeMo's greedy decodes on the same weights.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from speechkit.decoding import GreedyOptions, greedy_transducer_decode
from speechkit.decoding.reference import greedy_transducer_reference
from speechkit.losses.layout import JointLayout
from speechkit.modules.ctc import CTCHead, ctc_head_from_nemo
from speechkit.modules.transducer import (
    Joint,
    PredictionNetwork,
    PredictionState,
    joint_from_nemo,
    prediction_network_from_nemo,
    select_state,
)

FIXTURE = Path(__file__).parent / "fixtures" / "nemo_tiny.pt"


@pytest.mark.parametrize("num_layers", [1, 2])
def test_prediction_forward_equals_steps(num_layers):
    torch.manual_seed(0)
    pred = PredictionNetwork(7, hidden=12, num_layers=num_layers).double().eval()
    targets = torch.tensor([[1, 2, 3, 4], [6, 0, -1, -1]])  # -1: padding, any value is ignored
    lengths = torch.tensor([4, 2])
    g = pred(targets, lengths)
    assert g.shape == (2, 5, 12)
    state = pred.init_state(2)
    assert state.h.shape == (num_layers, 2, 12)
    step_in = torch.full((2,), 7)  # start id
    for u in range(5):
        out, state = pred.step(step_in, state)
        valid = u <= lengths
        torch.testing.assert_close(out[valid], g[valid, u])
        if u < 4:
            step_in = torch.where(u < lengths, targets[:, u], torch.tensor(7))


@pytest.mark.parametrize("num_layers", [1, 2])
def test_prediction_step_gate_table(num_layers):
    """Without gradients, step reads layer 0's input side from a cached (V + 1, 4H) table: it equals the whole-sequence
    LSTM, and any change of the weights it folds in (in place, load_state_dict, dtype) rebuilds it."""
    torch.manual_seed(1)
    pred = PredictionNetwork(7, hidden=12, num_layers=num_layers).double().eval()
    targets, lengths = torch.tensor([[1, 2, 3], [6, 0, 5]]), torch.tensor([3, 3])

    def steps():
        out, state, inp = [], pred.init_state(2), torch.full((2,), 7)
        for u in range(4):
            g, state = pred.step(inp, state)
            out.append(g)
            if u < 3:
                inp = targets[:, u]
        return torch.stack(out, dim=1)

    with torch.no_grad():
        table = pred.input_gates()
        assert table.shape == (8, 48) and pred.input_gates() is table  # cached
        torch.testing.assert_close(steps(), pred(targets, lengths))
        for name in ("embed.weight", "lstm.weight_ih_l0", "lstm.bias_ih_l0", "lstm.bias_hh_l0"):
            before = pred.input_gates()
            pred.get_parameter(name).add_(0.25)
            assert pred.input_gates() is not before, name
            torch.testing.assert_close(steps(), pred(targets, lengths))
        fresh = PredictionNetwork(7, hidden=12, num_layers=num_layers).double()
        pred.load_state_dict(fresh.state_dict())
        torch.testing.assert_close(steps(), pred(targets, lengths))
        pred.float()
        assert pred.input_gates().dtype == torch.float32
    # with gradients on, the input side is computed, so that gradients reach the embedding and W_ih
    pred.train()
    g, _ = pred.step(torch.tensor([3, 7]), pred.init_state(2))
    g.sum().backward()
    assert pred.embed.weight.grad[3].abs().sum() > 0 and pred.lstm.weight_ih_l0.grad.abs().sum() > 0


@pytest.mark.parametrize("make_opt", [
    lambda ps: torch.optim.AdamW(ps, lr=0.05, fused=True),  # the recipes' optimizer: no version bump
    lambda ps: torch.optim.SGD(ps, lr=0.5, fused=True),
    lambda ps: torch.optim.AdamW(ps, lr=0.05, foreach=False),
], ids=["adamw-fused", "sgd-fused", "adamw-loop"])
def test_gate_table_follows_optimizer_steps(make_opt):
    """Validation inside training decodes with the gate table: after each optimizer step it must be the table of
    the new weights, also for fused kernels that write parameters without bumping their version counters."""
    torch.manual_seed(0)
    pred = PredictionNetwork(7, hidden=12)
    opt = make_opt(pred.parameters())
    labels = torch.tensor([[1, 2, 3], [6, 0, 5]])
    for _ in range(3):
        pred.train()
        pred(labels, torch.tensor([3, 3])).square().sum().backward()
        opt.step()
        opt.zero_grad()
        pred.eval()
        with torch.no_grad():
            fresh = F.linear(pred.embed.weight, pred.lstm.weight_ih_l0, pred.lstm.bias_ih_l0) + pred.lstm.bias_hh_l0
            torch.testing.assert_close(pred.input_gates(), fresh, rtol=0, atol=0)


def test_copies_leave_out_decoding_caches():
    """deepcopy and pickling drop the gate table (and a model's captured decoder): the copy decodes from its own
    weights, never from the original's cache."""
    import copy
    import io

    pred = PredictionNetwork(7, hidden=12).eval()
    with torch.no_grad():
        g, _ = pred.step(torch.tensor([3]))
        assert "_input_gates_cache" in pred.__dict__
        clone = copy.deepcopy(pred)
        assert "_input_gates_cache" not in clone.__dict__
        clone.embed.weight.add_(1.0)
        assert not torch.equal(clone.step(torch.tensor([3]))[0], g)
        torch.testing.assert_close(pred.step(torch.tensor([3]))[0], g)
        buf = io.BytesIO()
        torch.save(pred, buf)
        buf.seek(0)
        loaded = torch.load(buf, weights_only=False)
        assert "_input_gates_cache" not in loaded.__dict__
        torch.testing.assert_close(loaded.step(torch.tensor([3]))[0], g)


def test_prediction_details():
    pred = PredictionNetwork(5, hidden=8, num_layers=2)
    assert pred.embed.weight.shape == (6, 8) and torch.all(pred.embed.weight[5] == 0)  # start id embeds to zero
    assert torch.all(pred.lstm.bias_ih_l1[8:16] == 1.0) and torch.all(pred.lstm.bias_hh_l0[8:16] == 0.0)
    with pytest.raises(ValueError, match=r"targets\[0, 1\] = 5"):
        pred(torch.tensor([[1, 5]]), torch.tensor([2]))
    new = PredictionState(torch.ones(2, 3, 8), torch.ones(2, 3, 8))
    old = PredictionState(torch.zeros(2, 3, 8), torch.zeros(2, 3, 8))
    mixed = select_state(torch.tensor([True, False, True]), new, old)
    assert mixed.h[:, :, 0].tolist() == [[1, 0, 1], [1, 0, 1]]


@pytest.mark.parametrize("layout", [JointLayout.rnnt(9), JointLayout.tdt(9, (0, 1, 2)), JointLayout.multiblank(9, (2, 4))])
def test_joint_shapes_and_projection(layout):
    torch.manual_seed(0)
    joint = Joint(6, 10, 14, layout=layout, activation="tanh").eval()
    f, g = torch.randn(2, 5, 6), torch.randn(2, 3, 10)
    z = joint(f, g)
    assert z.shape == (2, 5, 3, layout.num_outputs)
    fp, gp = joint.project_encoder(f), joint.project_prediction(g)
    torch.testing.assert_close(joint.joint_after_projection(fp[:, 4], gp[:, 1]), z[:, 4, 1])
    with pytest.raises(ValueError, match="activation"):
        Joint(6, 10, 14, layout=layout, activation="gelu")  # type: ignore[arg-type]


def test_ctc_head():
    head = CTCHead(6, 9)
    lp = head(torch.randn(2, 5, 6))
    assert lp.shape == (2, 5, 10) and head.blank_id == 9
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(2, 5))


# ---------------------------------------------------------------------------------------------------------------
# NeMo
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nemo():
    return torch.load(FIXTURE, weights_only=True)


def _layouts(fx) -> dict[str, JointLayout]:
    v = fx["sizes"]["V"]
    return {"rnnt": JointLayout.rnnt(v), "tdt": JointLayout.tdt(v, fx["tdt_durations"]),
            "multiblank": JointLayout.multiblank(v, fx["big_blanks"])}


def _load(fx, kind):
    s = fx["sizes"]
    pred = PredictionNetwork(s["V"], hidden=s["H"], num_layers=s["pred_layers"]).eval()
    pred.load_state_dict(prediction_network_from_nemo(fx["decoder"]))
    joint = Joint(s["D"], s["H"], s["J"], layout=_layouts(fx)[kind]).eval()
    joint.load_state_dict(joint_from_nemo(fx[kind]["joint"]))
    return pred, joint


@pytest.mark.parametrize("kind", ["rnnt", "tdt", "multiblank"])
def test_nemo_weights_give_nemo_outputs(nemo, kind):
    pred, joint = _load(nemo, kind)
    with torch.no_grad():
        g = pred(nemo["targets"], nemo["target_lengths"])
        z = joint(nemo["f"], g)
    # NeMo feeds the padding labels through its LSTM, we feed the start id: compare the rows a loss reads.
    for b, n in enumerate(nemo["target_lengths"].tolist()):
        torch.testing.assert_close(g[b, : n + 1], nemo["g"][b, : n + 1], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(z[b, :, : n + 1], nemo[kind]["raw_logits"][b, :, : n + 1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["rnnt", "tdt", "multiblank"])
def test_nemo_greedy_decodes(nemo, kind):
    """Same tokens and frames as NeMo's greedy decoders (RNN-T, TDT: label looping; multi-blank: per sample)."""
    pred, joint = _load(nemo, kind)
    ours = greedy_transducer_decode(nemo["f"], nemo["lengths"], pred, joint, GreedyOptions(max_symbols=10))
    theirs = nemo[kind]["greedy"]
    assert sum(len(h["tokens"]) for h in theirs) > 0
    assert [h.tokens for h in ours] == [h["tokens"] for h in theirs]
    assert [h.frames for h in ours] == [h["frames"] for h in theirs]
    if kind == "tdt":
        # durations against NeMo's per-sample decoder (its batched one may mix durations across the batch, #16097)
        assert [h.durations for h in ours] == [h["durations"] for h in nemo[kind]["greedy_per_sample"]]
    ref = greedy_transducer_reference(nemo["f"], nemo["lengths"], pred, joint)
    assert [h.tokens for h in ref] == [h.tokens for h in ours]


def test_nemo_ctc_head(nemo):
    s = nemo["sizes"]
    head = CTCHead(s["D"], s["V"])
    head.load_state_dict(ctc_head_from_nemo(nemo["ctc"]["state"]))
    with torch.no_grad():
        torch.testing.assert_close(head(nemo["f"]), nemo["ctc"]["log_probs"], rtol=1e-5, atol=1e-5)


def test_joint_from_nemo_without_dropout():
    sd = {"joint.enc.weight": torch.zeros(3, 2), "joint.joint_net.1.weight": torch.ones(4, 3),
          "joint.joint_net.1.bias": torch.ones(4), "decoder.x": torch.zeros(1)}
    assert sorted(joint_from_nemo(sd, prefix="joint.")) == ["enc.weight", "out.bias", "out.weight"]
