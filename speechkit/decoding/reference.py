"""Per-utterance greedy decoders in plain Python loops: the specification the batched decoders are tested against.

Each decoder walks one utterance frame by frame (the classic *frame-looping* formulation, NeMo's per-sample
``greedy`` strategy with its known bugs fixed), calls the joint's full ``forward`` on one (frame, label) pair at a
time and keeps every decision in Python ints. They share no code with :mod:`speechkit.decoding.greedy` apart from
the modules themselves, so agreement between the two is evidence, not tautology. Slow: for tests only.

Rules (transducers.md section 7):

- RNN-T: at frame t, emit labels until the argmax is blank or ``max_symbols`` labels were emitted; then t + 1.
- TDT: token and duration argmax independently; a blank moves ``max(d, 1)`` frames; a label with ``d > 0`` moves
  d frames (and may end the utterance); ``max_symbols`` labels in a row with ``d = 0`` force one frame on.
- multi-blank: as RNN-T, and a big blank of duration m_i at frame t also skips the next ``m_i - 1`` frames.
- CTC: argmax per frame, merge repeats, drop blanks.
"""

from __future__ import annotations

import torch
from torch import Tensor

from speechkit.decoding.greedy import GreedyOptions
from speechkit.decoding.hypotheses import Hypothesis
from speechkit.modules.transducer import Joint, PredictionNetwork

__all__ = ["ctc_greedy_reference", "greedy_transducer_reference"]


class _Utterance:
    """Decoder state for one utterance: prediction output and LSTM state, emitted tokens, score."""

    def __init__(self, f: Tensor, prediction: PredictionNetwork, joint: Joint) -> None:
        self.f, self.prediction, self.joint = f, prediction, joint
        self.layout = joint.layout
        self.g, self.state = prediction.step(torch.tensor([prediction.blank_id], device=f.device), None)
        self.tokens: list[int] = []
        self.frames: list[int] = []
        self.durations: list[int] = []
        self.score = 0.0

    def decide(self, t: int) -> tuple[int, int]:
        """Token argmax and duration-index argmax at frame t (duration index -1 without durations)."""
        logits = self.joint(self.f[t].view(1, 1, -1), self.g.view(1, 1, -1)).view(-1)
        tok = logits[: self.layout.num_token_classes]
        k = int(tok.argmax())  # decisions on the raw logits, as a decoder would take them
        self.score += float(torch.log_softmax(tok, dim=0)[k])
        if not self.layout.durations:
            return k, -1
        dur = logits[self.layout.num_token_classes:]
        i = int(dur.argmax())
        self.score += float(torch.log_softmax(dur, dim=0)[i])
        return k, i

    def emit(self, k: int, t: int, d: int = 0) -> None:
        self.tokens.append(k)
        self.frames.append(t)
        self.durations.append(d)
        self.g, self.state = self.prediction.step(torch.tensor([k], device=self.f.device), self.state)

    def result(self, num_frames: int) -> Hypothesis:
        tdt = self.layout.kind == "tdt"
        return Hypothesis(self.tokens, self.frames, self.durations if tdt else None, self.score, num_frames)


def _rnnt_or_multiblank(u: _Utterance, num_frames: int, options: GreedyOptions) -> None:
    layout = u.layout
    skip_of = {layout.big_blank_index(i): m - 1 for i, m in enumerate(layout.big_blank_durations)}
    skip = 0
    for t in range(num_frames):
        if skip > 0:  # inside a big blank
            skip -= 1
            continue
        emitted = 0
        while emitted < options.max_symbols:
            k, _ = u.decide(t)
            if k == layout.blank:
                break
            if k in skip_of:
                skip = skip_of[k] if options.big_blank_skip else 0
                break
            u.emit(k, t)
            emitted += 1


def _tdt(u: _Utterance, num_frames: int, options: GreedyOptions) -> None:
    layout = u.layout
    t, emitted = 0, 0
    while t < num_frames:
        k, i = u.decide(t)
        d = layout.durations[i]
        if k == layout.blank:
            t += max(d, 1)
            emitted = 0
            continue
        u.emit(k, t, d)
        if d > 0:
            t += d
            emitted = 0
        else:
            emitted += 1
            if emitted >= options.max_symbols:
                t += 1
                emitted = 0


@torch.no_grad()
def greedy_transducer_reference(
    encoder_out: Tensor,
    encoder_lengths: Tensor,
    prediction: PredictionNetwork,
    joint: Joint,
    options: GreedyOptions | None = None,
) -> list[Hypothesis]:
    """Decode each utterance on its own, frame by frame (same arguments and results as
    :func:`speechkit.decoding.greedy.greedy_transducer_decode`).

    Args:
        encoder_out: ``(B, T, D)``.
        encoder_lengths: ``(B,)``.
    """
    options = options or GreedyOptions()
    dtype = next(joint.parameters()).dtype
    out = []
    for b, n in enumerate(encoder_lengths.tolist()):
        u = _Utterance(encoder_out[b, :n].to(dtype), prediction, joint)
        (_tdt if joint.layout.kind == "tdt" else _rnnt_or_multiblank)(u, n, options)
        out.append(u.result(n))
    return out


@torch.no_grad()
def ctc_greedy_reference(log_probs: Tensor, lengths: Tensor, blank: int = -1) -> list[Hypothesis]:
    """Per-utterance CTC greedy decoding (same arguments and results as
    :func:`speechkit.decoding.greedy.ctc_greedy_decode`)."""
    blank = blank % log_probs.shape[-1]
    out = []
    for b, n in enumerate(lengths.tolist()):
        tokens: list[int] = []
        frames: list[int] = []
        durations: list[int] = []
        score, prev = 0.0, None
        for t in range(n):
            k = int(log_probs[b, t].argmax())
            score += float(log_probs[b, t, k])
            if k == prev:
                if k != blank:
                    durations[-1] += 1
                continue
            prev = k
            if k != blank:
                tokens.append(k)
                frames.append(t)
                durations.append(1)
        out.append(Hypothesis(tokens, frames, durations, score, n))
    return out
