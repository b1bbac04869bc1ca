"""Batched greedy decoding: label looping for RNN-T, TDT and multi-blank transducers, and CTC greedy.

**Label looping** (Bataev et al. 2024, arXiv 2406.06220; transducers.md 7.1-7.2). The outer loop runs over *labels*:
each iteration makes exactly one batched prediction-network step. The inner loop runs over *frames* and calls only
the joint, for the hypotheses whose last decision was a blank, until each has found its next label or run out of
frames. Every update is a masked tensor op (``torch.where``, index ops) on preallocated storage
(:class:`~speechkit.decoding.hypotheses.BatchedHyps`); the only host synchronisations are the two loop conditions
(``active.any()``, ``advance.any()``) and the final copy of the results.

One engine serves all three joint layouts; they differ only in how far a decision moves the frame pointer t:

========== ===================================== ==============================================================
kind       blank                                 label
========== ===================================== ==============================================================
rnnt       t += 1                                stays on t (next label from the same frame)
tdt        t += d, where d = 0 is forced to 1    t += d (d = 0 stays); a jump reaching T ends the hypothesis
multiblank t += 1; big blank i: t += m_i         stays on t
========== ===================================== ==============================================================

TDT takes the token argmax and the duration argmax independently. Durations are stored only for the hypotheses
that actually took the decision (NeMo's batched decoder overwrote them batch-wide, bug #16097), and the
``max_symbols`` guard adds exactly one frame when a frame has emitted ``max_symbols`` labels without time moving
(never on top of a jump: NeMo bug #16095).

**Multi-blank frame skipping.** NeMo's batched multi-blank decoder loops over frames and can only skip the
*minimum* big-blank duration over the batch. Here every hypothesis keeps its own frame pointer, so a big blank of
duration m_i moves just that hypothesis on by m_i frames: the result is exactly the per-utterance result (the tests
check it against :mod:`speechkit.decoding.reference`) and the batch never waits on its slowest member's skips.

**Streaming.** The loop itself is :func:`label_loop`, which runs over a window of frames ``[offset, end)`` and
keeps where it stands in a :class:`LabelLoopState`; offline decoding is one call over the whole utterance, and
:mod:`speechkit.decoding.streaming` makes one call per chunk of encoder frames with the same state, which gives the
same decisions.

**Scores** are log-probabilities (log-softmax over the token classes, plus the duration log-softmax for TDT) summed
over every decision the decoder took, blanks included: the log-probability of the greedy alignment. They are the
same on every device (NeMo sums raw logits on GPU and log-probs on CPU).

Example:
    >>> import torch
    >>> from speechkit.losses.layout import JointLayout
    >>> from speechkit.modules.transducer import Joint, PredictionNetwork
    >>> pred = PredictionNetwork(16, hidden=32).eval()
    >>> joint = Joint(24, 32, hidden=32, layout=JointLayout.tdt(16, (0, 1, 2, 3, 4))).eval()
    >>> hyps = greedy_transducer_decode(torch.randn(2, 20, 24), torch.tensor([20, 13]), pred, joint)
    >>> len(hyps), hyps[1].num_frames
    (2, 13)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from speechkit.decoding.hypotheses import BatchedHyps, Hypothesis
from speechkit.losses.layout import JointLayout
from speechkit.modules.transducer import Joint, PredictionNetwork, PredictionState, select_state

__all__ = ["GreedyOptions", "LabelLoopState", "ctc_greedy_decode", "greedy_transducer_decode", "label_loop"]

# Tensor dtypes whose .numpy() view keeps the values and NumPy computes in (bfloat16 has no NumPy dtype).
_NUMPY_EXACT = (torch.float32, torch.float64)


@dataclass(frozen=True)
class GreedyOptions:
    """Options of :func:`greedy_transducer_decode`.

    Attributes:
        max_symbols: most labels one frame may emit before the decoder moves on one frame (NeMo's
            ``max_symbols``, 10 in every shipped config). It bounds the work per frame and the output length
            (``T * max_symbols``), so it cannot be switched off.
        big_blank_skip: multi-blank only: a big blank skips its ``m_i - 1`` further frames. ``False`` treats big
            blanks as standard blanks (NeMo's decode-time ``big_blank_durations: [1, 1, 1]`` trick: slower,
            sometimes more accurate).
        compact: run the joint and the prediction network only on the hypotheses that need them (gathered with
            ``nonzero``) instead of on the whole batch under a mask. ``None``: for CPU tensors at batch > 1, where
            ``nonzero`` costs no device synchronisation and skipping finished or waiting rows saves work (1.2-1.7x at
            batch 16 in ``bench/decoding.py``), and for one CPU hypothesis (float32/float64) a loop with plain
            Python control flow (no masks: the tensor work is the joint and the LSTM step); on GPUs the masked form
            keeps the loop free of host round-trips. ``False`` forces the masked form, ``True`` the gathered one.
            The decisions are the same in every form.
        cuda_graphs: on a CUDA device, replay the loop bodies as CUDA graphs
            (:class:`~speechkit.decoding.cuda_graphs.GraphedGreedyDecoder`): far fewer kernel launches at small
            batches, the same decisions. Ignored for CPU tensors. :func:`greedy_transducer_decode` captures anew on
            every call; :meth:`~speechkit.modules.asr.TransducerASR.decode_encoded` keeps its captured decoder.
    """

    max_symbols: int = 10
    big_blank_skip: bool = True
    compact: bool | None = None
    cuda_graphs: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.max_symbols, int) or isinstance(self.max_symbols, bool) or self.max_symbols < 1:
            raise ValueError(f"max_symbols must be an integer >= 1, got {self.max_symbols!r}")
        if not isinstance(self.cuda_graphs, bool):
            raise ValueError(f"cuda_graphs must be True or False, got {self.cuda_graphs!r}")


class _Rule:
    """How one joint output becomes a decision: label, frames to advance, log-probability. Batched, ``(B, K)``."""

    def __init__(self, layout: JointLayout, options: GreedyOptions, device: torch.device) -> None:
        self.vocab_size = layout.vocab_size
        self.num_token_classes = layout.num_token_classes
        # Frames each token class moves t on (TDT replaces this with the predicted duration).
        advance = torch.zeros(layout.num_token_classes, dtype=torch.long)
        advance[layout.vocab_size:] = 1
        if layout.kind == "multiblank" and options.big_blank_skip:
            for i, m in enumerate(layout.big_blank_durations):
                advance[layout.big_blank_index(i)] = m
        self.advance = advance.to(device)
        self.durations = torch.tensor(layout.durations, dtype=torch.long, device=device) if layout.durations else None

    def __call__(self, logits: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(B, K) -> (label (B,), advance (B,), log_prob (B,))``."""
        tok = logits[:, : self.num_token_classes]
        label = tok.argmax(dim=-1)
        # log_softmax + gather is one fused pass; logsumexp is several small kernels (it matters at batch 1).
        log_prob = tok.log_softmax(dim=-1).gather(1, label.unsqueeze(1)).squeeze(1)
        if self.durations is None:
            return label, self.advance[label], log_prob
        dur = logits[:, self.num_token_classes:]
        index = dur.argmax(dim=-1)
        log_prob = log_prob + dur.log_softmax(dim=-1).gather(1, index.unsqueeze(1)).squeeze(1)
        d = self.durations[index]
        # A blank must move time on: duration 0 becomes 1 (NeMo's rule; without it the decoder would re-evaluate the
        # same inputs until max_symbols ran out).
        return label, torch.where(label >= self.vocab_size, d.clamp(min=1), d), log_prob


def _check_inputs(x: Tensor, x_lengths: Tensor, names: tuple[str, str] = ("encoder_out", "encoder_lengths")) -> Tensor:
    """Validate ``x`` ``(B, T, C)`` and its lengths ``(B,)`` in ``[0, T]``; returns the lengths as int64 on x's device."""
    name, lengths_name = names
    if x.dim() != 3:
        raise ValueError(f"{name} must be (B, T, C), got shape {tuple(x.shape)}")
    batch, max_t = x.shape[:2]
    if x_lengths.shape != (batch,):
        raise ValueError(f"{lengths_name} must be ({batch},) for {name} {tuple(x.shape)}, got {tuple(x_lengths.shape)}")
    lengths = x_lengths.to(device=x.device, dtype=torch.long)
    if batch and (int(lengths.min()) < 0 or int(lengths.max()) > max_t):
        raise ValueError(f"{lengths_name} must lie in [0, {max_t}], got {lengths.tolist()}")
    return lengths


@torch.no_grad()
def greedy_transducer_decode(
    encoder_out: Tensor,
    encoder_lengths: Tensor,
    prediction: PredictionNetwork,
    joint: Joint,
    options: GreedyOptions | None = None,
) -> list[Hypothesis]:
    """Batched greedy label-looping decoding of an RNN-T, TDT or multi-blank transducer (kind from ``joint.layout``).

    Put the modules in ``eval()`` mode first: dropout would make the decisions random.

    Args:
        encoder_out: ``(B, T, D)`` encoder output.
        encoder_lengths: ``(B,)`` valid frames per utterance, in ``[0, T]``.
        prediction: the prediction network (start id ``prediction.blank_id``).
        joint: the joint; ``joint.layout`` says which logits are tokens, blanks and durations.
        options: :class:`GreedyOptions` (defaults when ``None``).

    Returns:
        One :class:`Hypothesis` per utterance: tokens, emission frames, durations (TDT), score.
    """
    options = options or GreedyOptions()
    lengths = _check_inputs(encoder_out, encoder_lengths)
    batch, max_t, _ = encoder_out.shape
    device = encoder_out.device
    dtype = next(joint.parameters()).dtype
    if batch == 0:
        return []
    if options.cuda_graphs and device.type == "cuda":
        from speechkit.decoding.cuda_graphs import GraphedGreedyDecoder  # imports this module

        return GraphedGreedyDecoder(prediction, joint, options)(encoder_out, encoder_lengths)
    # A frame emits at most max_symbols labels (the guard), so T * max_symbols slots always suffice.
    hyps = BatchedHyps.allocate(batch, max_t * options.max_symbols, device, torch.promote_types(dtype, torch.float32))
    loop = LabelLoopState.start(batch, prediction, joint, device, dtype)
    enc = joint.project_encoder(encoder_out.to(dtype))  # (B, T, J), projected once
    label_loop(enc, torch.zeros_like(lengths), lengths, loop, hyps, prediction, joint, options)
    return hyps.to_list(lengths, with_durations=joint.layout.kind == "tdt")


@dataclass
class LabelLoopState:
    """Where label looping stands for B hypotheses between two calls of :func:`label_loop`.

    Offline decoding makes one call over the whole utterance; streaming decoding
    (:mod:`speechkit.decoding.streaming`) makes one per chunk of encoder frames and keeps this in between. Every
    field is ``(B,)`` unless told.

    Attributes:
        pred: ``(B, J)`` the joint's projection of the prediction-network output for the last emitted label.
        state: the prediction network's LSTM state after the last emitted label, ``(L, B, H)`` each.
        t: absolute index of the next frame to look at; a TDT jump or a big blank may put it past the frames seen
            so far (the skip is then carried into later chunks).
        run: labels emitted in a row at ``run_frame`` (the ``max_symbols`` guard).
        run_frame: frame of the last emitted label (-1 before the first).
    """

    pred: Tensor
    state: PredictionState
    t: Tensor
    run: Tensor
    run_frame: Tensor

    @classmethod
    def start(cls, batch: int, prediction: PredictionNetwork, joint: Joint, device: torch.device,
              dtype: torch.dtype) -> LabelLoopState:
        """The state before any frame: the prediction network has seen the start id (``prediction.blank_id``)."""
        sos = torch.full((batch,), prediction.blank_id, dtype=torch.long, device=device)
        g, state = prediction.step(sos, prediction.init_state(batch, device, dtype))
        t = torch.zeros(batch, dtype=torch.long, device=device)
        return cls(joint.project_prediction(g), state, t, torch.zeros_like(t), torch.full_like(t, -1))


def label_loop(
    enc: Tensor,
    offset: Tensor,
    end: Tensor,
    loop: LabelLoopState,
    hyps: BatchedHyps,
    prediction: PredictionNetwork,
    joint: Joint,
    options: GreedyOptions,
) -> None:
    """Run label looping over the frames ``[offset, end)`` of each hypothesis; updates ``loop`` and ``hyps`` in place.

    Row ``b`` of ``enc`` holds the (projected) frames ``offset[b] .. offset[b] + T - 1`` of its utterance. A
    hypothesis stops when its next frame ``t`` reaches ``end``: for the last chunk that is the utterance's end; for
    an earlier chunk it is a pause, and calling again with the next frames continues exactly where this call
    stopped (the decisions are those of one call over all the frames).

    Args:
        enc: ``(B, T, J)`` encoder frames after :meth:`Joint.project_encoder`.
        offset: ``(B,)`` absolute index of ``enc[:, 0]``.
        end: ``(B,)`` absolute end of the valid frames, ``<= offset + T``.
        loop: the state to continue from (:meth:`LabelLoopState.start` for a new utterance).
        hyps: where emitted labels (absolute frames) and scores go.
        prediction: the prediction network.
        joint: the joint.
        options: :class:`GreedyOptions`.
    """
    batch, num_t = enc.shape[:2]
    if batch == 0 or num_t == 0:
        return
    device = enc.device
    rule = _Rule(joint.layout, options, device)
    vocab = joint.layout.vocab_size
    if (batch == 1 and options.compact is None and device.type == "cpu"
            and hyps.scores.dtype in (torch.float32, torch.float64)):
        _label_loop_one(enc, offset, end, loop, hyps, prediction, joint, options, rule)
        return
    gates = prediction.input_gates()  # fetched once per call: each fetch checks the cache key (a few microseconds)
    rows = torch.arange(batch, device=device)
    last = (end - offset - 1).clamp(min=0)  # last valid row index of each chunk
    sos = torch.full((batch,), prediction.blank_id, dtype=torch.long, device=device)
    compact = options.compact if options.compact is not None else device.type == "cpu" and batch > 1

    def decide(mask: Tensor, t: Tensor, pred: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Joint + decision for the rows in ``mask`` (other rows: unspecified values, masked out by the caller)."""
        if not compact:
            return rule(joint.joint_after_projection(enc[rows, torch.minimum(t - offset, last).clamp(min=0)], pred))
        idx = mask.nonzero().squeeze(1)
        local = torch.minimum(t[idx] - offset[idx], last[idx]).clamp(min=0)
        out = rule(joint.joint_after_projection(enc[idx, local], pred[idx]))
        return tuple(torch.zeros(batch, dtype=x.dtype, device=device).index_copy_(0, idx, x) for x in out)

    def predict(found: Tensor, label: Tensor, pred: Tensor, state: PredictionState) -> tuple[Tensor, PredictionState]:
        """Prediction-network step for the rows in ``found``; other rows keep their output and state."""
        if not compact:
            g_new, state_new = prediction.step(torch.where(found, label, sos), state, gates)
            pred = torch.where(found.unsqueeze(1), joint.project_prediction(g_new), pred)
            return pred, select_state(found, state_new, state)
        idx = found.nonzero().squeeze(1)
        if idx.numel() == 0:
            return pred, state
        g_new, sub = prediction.step(label[idx], PredictionState(state.h[:, idx], state.c[:, idx]), gates)
        pred = pred.index_copy(0, idx, joint.project_prediction(g_new))
        return pred, PredictionState(state.h.index_copy(1, idx, sub.h), state.c.index_copy(1, idx, sub.c))

    pred, state, t, run, run_frame = loop.pred, loop.state, loop.t, loop.run, loop.run_frame
    active = t < end

    while bool(active.any()):
        was_active = active
        frame = t.clone()  # frame of the decision that ends this iteration
        label, advance, log_prob = decide(active, t, pred)
        hyps.add_scores(active, log_prob)
        t = torch.where(active, t + advance, t)
        is_blank = label >= vocab
        active = t < end
        searching = active & is_blank
        # Inner loop: only the joint, only for hypotheses that found a blank and still have frames.
        while bool(searching.any()):
            frame = torch.where(searching, t, frame)
            more_label, more_advance, more_log_prob = decide(searching, t, pred)
            hyps.add_scores(searching, more_log_prob)
            label = torch.where(searching, more_label, label)
            advance = torch.where(searching, more_advance, advance)
            t = torch.where(searching, t + more_advance, t)
            is_blank = label >= vocab
            active = t < end
            searching = active & is_blank

        # A label found by a hypothesis that was live at the start of the iteration is emitted even when its TDT
        # jump ended the utterance (or the chunk: the jump is carried in t).
        found = was_active & ~is_blank
        hyps.append(found, label, frame, advance)
        pred, state = predict(found, label, pred, state)

        # max_symbols guard: the frame emitted max_symbols labels and time did not move -> go on one frame.
        run = torch.where(found, torch.where(frame == run_frame, run + 1, torch.ones_like(run)), run)
        run_frame = torch.where(found, frame, run_frame)
        forced = found & (t == frame) & (run >= options.max_symbols)
        t = t + forced.long()
        active = t < end

    loop.pred, loop.state, loop.t, loop.run, loop.run_frame = pred, state, t, run, run_frame


def _label_loop_one(enc: Tensor, offset: Tensor, end: Tensor, loop: LabelLoopState, hyps: BatchedHyps,
                    prediction: PredictionNetwork, joint: Joint, options: GreedyOptions, rule: _Rule) -> None:
    """:func:`label_loop` for one hypothesis on the CPU, with Python control flow instead of masked tensor updates.

    At batch 1 the masked loop spends most of its time on bookkeeping ops (``where``, index writes, the guard), each
    a few microseconds of dispatch; here only the joint (on ``(1, J)`` rows, the very shapes of the masked loop) and
    the LSTM step are tensor ops, and each decision's argmaxes and log-softmax run in NumPy on the joint's output.
    The decisions are those of the masked loop (the same argmax of the same logits); the scores sum the same
    per-decision log-probabilities in the same order, equal to the last bits of the log-softmax's rounding.
    """
    vocab, num_classes = rule.vocab_size, rule.num_token_classes
    advance_of = rule.advance.tolist()
    durations = rule.durations.tolist() if rule.durations is not None else None
    to_score = np.float64 if hyps.scores.dtype == torch.float64 else np.float32
    off, stop = int(offset[0]), int(end[0])
    last = max(stop - off - 1, 0)
    t, run, run_frame = int(loop.t[0]), int(loop.run[0]), int(loop.run_frame[0])
    score = to_score(hyps.scores[0].item())
    pred, state = loop.pred, loop.state  # (1, J), (L, 1, H) x 2
    frames_enc = enc[0]  # (T, J)
    gates = prediction.input_gates()
    ids = torch.arange(prediction.blank_id + 1, device=enc.device).unsqueeze(1)  # ids[k]: (1,), no new tensor
    labels: list[int] = []
    frames: list[int] = []
    advances: list[int] = []
    while t < stop:
        frame = t
        while True:  # decisions until a label, or a blank that runs out of frames
            local = max(min(t - off, last), 0)
            logits = joint.joint_after_projection(frames_enc[local:local + 1], pred)[0]  # (K,)
            # NumPy from here on: on ~150 numbers each op is a fraction of a torch op's dispatch cost. A winner's
            # log-softmax is -log(sum(exp(x - x_max))).
            out = logits.numpy() if logits.dtype in _NUMPY_EXACT else logits.float().numpy()
            tok = out[:num_classes]
            label = int(tok.argmax())
            log_prob = to_score(-math.log(np.exp(tok - tok[label]).sum()))
            if durations is None:
                advance = advance_of[label]
            else:
                dur = out[num_classes:]
                index = int(dur.argmax())
                log_prob = log_prob + to_score(-math.log(np.exp(dur - dur[index]).sum()))
                advance = max(durations[index], 1) if label >= vocab else durations[index]
            score = score + log_prob
            t += advance
            if label < vocab or t >= stop:
                break
            frame = t
        if label >= vocab:
            break
        labels.append(label)
        frames.append(frame)
        advances.append(advance)
        g, state = prediction.step(ids[label], state, gates)
        pred = joint.project_prediction(g)
        # max_symbols guard, as in label_loop
        run = run + 1 if frame == run_frame else 1
        run_frame = frame
        if t == frame and run >= options.max_symbols:
            t += 1

    n, k = int(hyps.lengths[0]), len(labels)
    if k:
        hyps.labels[0, n:n + k] = torch.tensor(labels)
        hyps.frames[0, n:n + k] = torch.tensor(frames)
        hyps.durations[0, n:n + k] = torch.tensor(advances)
        hyps.lengths[0] = n + k
    hyps.scores[0] = float(score)
    loop.pred, loop.state = pred, state
    loop.t, loop.run, loop.run_frame = (torch.tensor([v], dtype=torch.long, device=enc.device)
                                        for v in (t, run, run_frame))


@torch.no_grad()
def ctc_greedy_decode(log_probs: Tensor, lengths: Tensor, blank: int = -1) -> list[Hypothesis]:
    """Batched CTC greedy decoding: per-frame argmax, merge repeats, drop blanks.

    Args:
        log_probs: ``(B, T, C)`` log-probabilities (or logits: the argmax is the same, the score is not).
        lengths: ``(B,)`` valid frames, in ``[0, T]``.
        blank: blank index; negative counts from the end (``-1``: the last class, NeMo's layout).

    Returns:
        One :class:`Hypothesis` per utterance. ``frames`` is the first frame of each token's run, ``durations`` its
        run length in frames, ``score`` the sum of the per-frame maxima over the valid frames.

    Example:
        >>> lp = torch.log_softmax(torch.randn(2, 30, 9), dim=-1)
        >>> [len(h.frames) == len(h.tokens) for h in ctc_greedy_decode(lp, torch.tensor([30, 12]))]
        [True, True]
    """
    lengths = _check_inputs(log_probs, lengths, ("log_probs", "lengths"))
    batch, max_t, classes = log_probs.shape
    blank = blank + classes if blank < 0 else blank
    if not 0 <= blank < classes:
        raise ValueError(f"blank={blank} is outside the {classes} classes")
    best, ids = log_probs.max(dim=-1)  # (B, T)
    frame = torch.arange(max_t, device=log_probs.device)
    valid = frame < lengths.unsqueeze(1)
    scores = torch.where(valid, best, torch.zeros_like(best)).sum(dim=1)
    prev = torch.cat([torch.full_like(ids[:, :1], -1), ids[:, :-1]], dim=1)
    run_start = valid & (ids != prev)  # a new run of identical ids begins
    token_start = run_start & (ids != blank)
    # Next run start after each frame (or the utterance end): reverse cumulative minimum over run starts.
    marks = torch.where(run_start, frame, lengths.unsqueeze(1).expand_as(ids))
    nxt = torch.cat([marks[:, 1:], lengths.unsqueeze(1)], dim=1)
    next_start = nxt.flip(1).cummin(dim=1).values.flip(1)
    run_length = next_start - frame

    rows, cols = token_start.nonzero(as_tuple=True)
    counts = token_start.sum(dim=1).tolist()
    tokens = ids[rows, cols].tolist()
    durations = run_length[rows, cols].tolist()
    frames = cols.tolist()
    scores_l, lengths_l = scores.tolist(), lengths.tolist()
    out, start = [], 0
    for b in range(batch):
        end = start + counts[b]
        out.append(Hypothesis(tokens[start:end], frames[start:end], durations[start:end], scores_l[b], lengths_l[b]))
        start = end
    return out
