"""Greedy decoding that continues across chunks of encoder frames: RNN-T, TDT, multi-blank and CTC.

A streaming encoder hands out its frames a chunk at a time. :class:`StreamingTransducerDecoder` and
:class:`StreamingCTCDecoder` take each chunk as it comes and keep everything needed to go on in a typed
:class:`DecoderStreamState` (one row per stream, batched: ``stack`` / ``unstack`` move rows between a batch and the
streams). **Invariant** (the tests check it for every joint layout and many chunkings, one frame per chunk
included): decoding chunk by chunk gives exactly the tokens, frames, durations (and, up to rounding, the score) of
the offline batched decoders (:func:`~speechkit.decoding.greedy.greedy_transducer_decode`,
:func:`~speechkit.decoding.greedy.ctc_greedy_decode`) on the concatenated frames.

How the transducer case stays exact: the offline label-looping loop (:func:`~speechkit.decoding.greedy.label_loop`)
is run over each chunk with the chunk's end as the stopping point. A hypothesis that reaches the end of a chunk
pauses where it is; everything its next decision depends on is in the state:

- the prediction network's output and LSTM state after the last label (:class:`LabelLoopState`);
- the absolute next frame ``t``: a TDT duration or a multi-blank big blank may jump past the chunk's end, and the
  rest of the jump is carried into later chunks (:attr:`DecoderStreamState.pending_skip`);
- the labels emitted in a row at the last label's frame (the ``max_symbols`` guard; a pause only happens once ``t``
  has left the chunk, so the count never straddles a pause, but it is kept with the rest of the loop state);
- the absolute frame offset of the next chunk, so that emitted frames (timestamps) count from the stream's start.

The CTC case carries the argmax id of the last frame, so that a run of the same id across a chunk boundary is
merged (and the last token's duration grows) as in the offline decoder.

Example:
    >>> import torch
    >>> from speechkit.decoding.greedy import greedy_transducer_decode
    >>> from speechkit.losses.layout import JointLayout
    >>> from speechkit.modules.transducer import Joint, PredictionNetwork
    >>> pred = PredictionNetwork(16, hidden=32).eval()
    >>> joint = Joint(24, 32, hidden=32, layout=JointLayout.tdt(16, (0, 1, 2, 3, 4))).eval()
    >>> enc = torch.randn(1, 20, 24)
    >>> decoder = StreamingTransducerDecoder(pred, joint)
    >>> state = decoder.init_state(1)
    >>> for chunk in enc.split(3, dim=1):
    ...     state = decoder.decode_chunk(chunk, torch.tensor([chunk.shape[1]]), state)
    >>> offline = greedy_transducer_decode(enc, torch.tensor([20]), pred, joint)[0]
    >>> state.hypotheses()[0].tokens == offline.tokens
    True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from speechkit.decoding.greedy import GreedyOptions, LabelLoopState, _check_inputs, label_loop
from speechkit.decoding.hypotheses import BatchedHyps, Hypothesis
from speechkit.modules.transducer import Joint, PredictionNetwork, PredictionState

__all__ = ["DecoderStreamState", "StreamingCTCDecoder", "StreamingTransducerDecoder"]


@dataclass
class DecoderStreamState:
    """Greedy decoding state of B streams between two chunks (per-stream: B = 1; batched: :meth:`stack`).

    Attributes:
        kind: ``"rnnt"``, ``"tdt"``, ``"multiblank"`` or ``"ctc"``.
        frames_seen: ``(B,)`` encoder frames received so far: the absolute index of the next chunk's first frame.
        score: ``(B,)`` log-probability of the decisions taken so far (see the offline decoders).
        tokens: per stream, the token ids emitted so far.
        frames: per stream, the absolute encoder frame of each token.
        durations: per stream, each token's duration in frames (TDT: predicted; CTC: run length so far, the last
            one may still grow); empty lists for RNN-T and multi-blank.
        finished: ``(B,)`` bool, the stream's last chunk (``final=True``) has been decoded.
        loop: transducers: prediction-network output and state, next absolute frame ``t`` (may lie past
            ``frames_seen``: a pending skip), labels emitted in a row at the last label's frame (``max_symbols``
            guard); ``None`` for CTC.
        ctc_last: CTC: ``(B,)`` argmax id of the last frame seen (-1 before the first); ``None`` for transducers.
    """

    kind: str
    frames_seen: Tensor
    score: Tensor
    tokens: list[list[int]]
    frames: list[list[int]]
    durations: list[list[int]]
    finished: Tensor
    loop: LabelLoopState | None = None
    ctc_last: Tensor | None = None

    @property
    def batch_size(self) -> int:
        """B, the number of streams."""
        return int(self.frames_seen.shape[0])

    @property
    def pending_skip(self) -> Tensor:
        """``(B,)`` frames of a TDT jump / big blank still to skip at the start of the next chunk (0 for CTC)."""
        if self.loop is None:
            return torch.zeros_like(self.frames_seen)
        return (self.loop.t - self.frames_seen).clamp(min=0)

    def last_tokens(self, blank_id: int) -> list[int]:
        """Per stream, the last emitted token id, or ``blank_id`` (the start id) before the first."""
        return [toks[-1] if toks else blank_id for toks in self.tokens]

    def hypotheses(self) -> list[Hypothesis]:
        """The hypothesis of each stream so far (frames absolute; ``num_frames`` = frames seen)."""
        with_durations = self.kind in ("tdt", "ctc")
        scores, seen = self.score.tolist(), self.frames_seen.tolist()
        return [
            Hypothesis(list(self.tokens[b]), list(self.frames[b]), list(self.durations[b]) if with_durations else None,
                       float(scores[b]), int(seen[b]))
            for b in range(self.batch_size)
        ]

    @classmethod
    def stack(cls, states: Sequence[DecoderStreamState]) -> DecoderStreamState:
        """Concatenate the streams of several states (same kind, same device) into one batch, in order.

        Raises:
            ValueError: no states, or states of different kinds.
        """
        if not states:
            raise ValueError("DecoderStreamState.stack needs at least one state")
        kinds = {s.kind for s in states}
        if len(kinds) > 1:
            raise ValueError(f"cannot stack decoder states of different kinds: {sorted(kinds)}")
        if len(states) == 1:
            return states[0]

        def cat(name: str) -> Tensor:
            return torch.cat([getattr(s, name) for s in states])

        loop = None
        if states[0].loop is not None:
            loops = [s.loop for s in states]
            loop = LabelLoopState(
                pred=torch.cat([lp.pred for lp in loops]),  # type: ignore[union-attr]
                state=PredictionState(torch.cat([lp.state.h for lp in loops], dim=1),  # type: ignore[union-attr]
                                      torch.cat([lp.state.c for lp in loops], dim=1)),  # type: ignore[union-attr]
                t=torch.cat([lp.t for lp in loops]),  # type: ignore[union-attr]
                run=torch.cat([lp.run for lp in loops]),  # type: ignore[union-attr]
                run_frame=torch.cat([lp.run_frame for lp in loops]),  # type: ignore[union-attr]
            )
        return cls(
            kind=states[0].kind, frames_seen=cat("frames_seen"), score=cat("score"),
            tokens=[t for s in states for t in s.tokens], frames=[f for s in states for f in s.frames],
            durations=[d for s in states for d in s.durations], finished=cat("finished"), loop=loop,
            ctc_last=cat("ctc_last") if states[0].ctc_last is not None else None,
        )

    def select(self, rows: Sequence[int]) -> DecoderStreamState:
        """The streams ``rows`` (in that order) as a new state."""
        idx = torch.tensor(list(rows), dtype=torch.long, device=self.frames_seen.device)
        loop = None
        if self.loop is not None:
            lp = self.loop
            loop = LabelLoopState(lp.pred[idx], PredictionState(lp.state.h[:, idx], lp.state.c[:, idx]), lp.t[idx],
                                  lp.run[idx], lp.run_frame[idx])
        return DecoderStreamState(
            kind=self.kind, frames_seen=self.frames_seen[idx], score=self.score[idx],
            tokens=[list(self.tokens[r]) for r in rows], frames=[list(self.frames[r]) for r in rows],
            durations=[list(self.durations[r]) for r in rows], finished=self.finished[idx], loop=loop,
            ctc_last=self.ctc_last[idx] if self.ctc_last is not None else None,
        )

    def unstack(self) -> list[DecoderStreamState]:
        """One state per stream (B = 1 each), in order."""
        return [self.select([b]) for b in range(self.batch_size)]


def _as_final(final: bool | Tensor, batch: int, device: torch.device) -> Tensor:
    """``final`` as a ``(B,)`` bool tensor."""
    if isinstance(final, Tensor):
        if final.shape != (batch,):
            raise ValueError(f"final must be a bool or a ({batch},) bool tensor, got shape {tuple(final.shape)}")
        return final.to(device=device, dtype=torch.bool)
    return torch.full((batch,), bool(final), dtype=torch.bool, device=device)


def _check_state(state: DecoderStreamState, batch: int, lengths: Tensor) -> None:
    if state.batch_size != batch:
        raise ValueError(f"the decoder state holds {state.batch_size} streams but the chunk has {batch}")
    done = state.finished.to(lengths.device) & (lengths > 0)
    if bool(done.any()):
        rows = done.nonzero().squeeze(1).tolist()
        raise ValueError(f"streams {rows} got frames after their final chunk (reset or create a new state)")


class StreamingTransducerDecoder:
    """Greedy label-looping decoding of an RNN-T, TDT or multi-blank transducer, chunk by chunk.

    Holds the networks and options only; all per-stream state is in :class:`DecoderStreamState`. Put the
    networks in ``eval()`` mode first.

    Args:
        prediction: the prediction network.
        joint: the joint (``joint.layout`` gives the kind).
        options: :class:`~speechkit.decoding.greedy.GreedyOptions` (defaults when ``None``), the same as offline.
    """

    def __init__(self, prediction: PredictionNetwork, joint: Joint, options: GreedyOptions | None = None) -> None:
        self.prediction = prediction
        self.joint = joint
        self.options = options or GreedyOptions()
        self.kind = joint.layout.kind

    def _dtype(self) -> torch.dtype:
        return next(self.joint.parameters()).dtype

    @torch.no_grad()
    def init_state(self, batch: int, device: torch.device | str | None = None) -> DecoderStreamState:
        """The state of ``batch`` new streams (the prediction network has seen the start id).

        Args:
            batch: number of streams.
            device: where the tensors live (default: the joint's device).
        """
        device = torch.device(device) if device is not None else next(self.joint.parameters()).device
        dtype = self._dtype()
        loop = LabelLoopState.start(batch, self.prediction, self.joint, device, dtype)
        zeros = torch.zeros(batch, dtype=torch.long, device=device)
        return DecoderStreamState(
            kind=self.kind, frames_seen=zeros, score=torch.zeros(batch, dtype=torch.promote_types(dtype, torch.float32),
                                                                 device=device),
            tokens=[[] for _ in range(batch)], frames=[[] for _ in range(batch)],
            durations=[[] for _ in range(batch)], finished=torch.zeros(batch, dtype=torch.bool, device=device),
            loop=loop,
        )

    def reset(self, state: DecoderStreamState) -> DecoderStreamState:
        """Start a new segment in every stream of ``state`` (after an endpoint).

        The prediction network starts again from the start id and the hypothesis is emptied; the frame count goes
        on (frames stay absolute) and decoding restarts at the next frame received: a pending skip of the old
        segment is dropped.
        """
        fresh = self.init_state(state.batch_size, state.frames_seen.device)
        fresh.frames_seen = state.frames_seen.clone()
        fresh.loop.t = state.frames_seen.clone()  # type: ignore[union-attr]
        return fresh

    @torch.no_grad()
    def decode_chunk(
        self, encoder_out: Tensor, encoder_lengths: Tensor, state: DecoderStreamState, final: bool | Tensor = False,
    ) -> DecoderStreamState:
        """Decode the next encoder frames of every stream.

        Args:
            encoder_out: ``(B, T, D)`` the next frames of each stream (any number, 0 included).
            encoder_lengths: ``(B,)`` valid frames per stream, in ``[0, T]``.
            state: from :meth:`init_state` or the previous call (not modified).
            final: ``True`` (or a ``(B,)`` bool tensor): these are the streams' last frames.

        Returns:
            The new state.

        Raises:
            ValueError: shapes that do not fit the state, or frames for a finished stream.
        """
        lengths = _check_inputs(encoder_out, encoder_lengths)
        batch, max_t, _ = encoder_out.shape
        _check_state(state, batch, lengths)
        device = encoder_out.device
        dtype = self._dtype()
        assert state.loop is not None
        loop = dataclasses.replace(state.loop)
        offset = state.frames_seen.to(device)
        end = offset + lengths
        hyps = BatchedHyps.allocate(batch, max_t * self.options.max_symbols, device, state.score.dtype)
        if max_t > 0:
            enc = self.joint.project_encoder(encoder_out.to(dtype))
            label_loop(enc, offset, end, loop, hyps, self.prediction, self.joint, self.options)
        new = hyps.to_list(lengths, with_durations=True)
        return DecoderStreamState(
            kind=state.kind, frames_seen=end, score=state.score + hyps.scores,
            tokens=[old + h.tokens for old, h in zip(state.tokens, new, strict=True)],
            frames=[old + h.frames for old, h in zip(state.frames, new, strict=True)],
            durations=[old + (h.durations or []) if self.kind == "tdt" else []
                       for old, h in zip(state.durations, new, strict=True)],
            finished=state.finished | _as_final(final, batch, device), loop=loop,
        )


class StreamingCTCDecoder:
    """Greedy CTC decoding (argmax, merge repeats, drop blanks), chunk by chunk.

    Args:
        blank: blank index; negative counts from the end (``-1``: the last class, as in
            :func:`~speechkit.decoding.greedy.ctc_greedy_decode`).
    """

    kind = "ctc"

    def __init__(self, blank: int = -1) -> None:
        self.blank = blank

    def init_state(self, batch: int, device: torch.device | str | None = None) -> DecoderStreamState:
        """The state of ``batch`` new streams."""
        device = torch.device(device or "cpu")
        zeros = torch.zeros(batch, dtype=torch.long, device=device)
        return DecoderStreamState(
            kind="ctc", frames_seen=zeros, score=torch.zeros(batch, dtype=torch.float32, device=device),
            tokens=[[] for _ in range(batch)], frames=[[] for _ in range(batch)],
            durations=[[] for _ in range(batch)], finished=torch.zeros(batch, dtype=torch.bool, device=device),
            ctc_last=torch.full((batch,), -1, dtype=torch.long, device=device),
        )

    def reset(self, state: DecoderStreamState) -> DecoderStreamState:
        """Start a new segment in every stream (the frame count goes on)."""
        fresh = self.init_state(state.batch_size, state.frames_seen.device)
        fresh.frames_seen = state.frames_seen.clone()
        return fresh

    @torch.no_grad()
    def decode_chunk(
        self, log_probs: Tensor, lengths: Tensor, state: DecoderStreamState, final: bool | Tensor = False,
    ) -> DecoderStreamState:
        """Decode the next frames of every stream.

        Args:
            log_probs: ``(B, T, C)`` the CTC head's log-probabilities for the next frames.
            lengths: ``(B,)`` valid frames per stream, in ``[0, T]``.
            state: from :meth:`init_state` or the previous call (not modified).
            final: ``True`` (or a ``(B,)`` bool tensor): these are the streams' last frames.

        Returns:
            The new state.

        Raises:
            ValueError: bad shapes, a blank outside the classes, or frames for a finished stream.
        """
        lengths = _check_inputs(log_probs, lengths, ("log_probs", "lengths"))
        batch, max_t, classes = log_probs.shape
        _check_state(state, batch, lengths)
        blank = self.blank + classes if self.blank < 0 else self.blank
        if not 0 <= blank < classes:
            raise ValueError(f"blank={self.blank} is outside the {classes} classes")
        device = log_probs.device
        assert state.ctc_last is not None
        offset = state.frames_seen.to(device)
        last = state.ctc_last.to(device)
        tokens = [list(t) for t in state.tokens]
        frames = [list(f) for f in state.frames]
        durations = [list(d) for d in state.durations]
        score = state.score.to(device)
        if max_t > 0:
            best, ids = log_probs.max(dim=-1)  # (B, T)
            frame = torch.arange(max_t, device=device)
            valid = frame < lengths.unsqueeze(1)
            score = score.to(torch.promote_types(score.dtype, best.dtype))
            score = score + torch.where(valid, best, torch.zeros_like(best)).sum(dim=1)
            prev = torch.cat([last.unsqueeze(1), ids[:, :-1]], dim=1)
            run_start = valid & (ids != prev)
            token_start = run_start & (ids != blank)
            marks = torch.where(run_start, frame, lengths.unsqueeze(1).expand_as(ids))
            nxt = torch.cat([marks[:, 1:], lengths.unsqueeze(1)], dim=1)
            run_length = nxt.flip(1).cummin(dim=1).values.flip(1) - frame
            # Frames that continue the run the previous chunk ended in: up to the first run start.
            lead = torch.where(run_start.any(dim=1), run_start.float().argmax(dim=1), lengths)
            rows, cols = token_start.nonzero(as_tuple=True)
            new_ids, new_len = ids[rows, cols].tolist(), run_length[rows, cols].tolist()
            new_frames = (cols + offset[rows]).tolist()
            lead_l, last_l, row_l = lead.tolist(), last.tolist(), rows.tolist()
            for b in range(batch):
                if lead_l[b] > 0 and last_l[b] not in (-1, blank) and tokens[b]:
                    durations[b][-1] += lead_l[b]
            for r, i, f, d in zip(row_l, new_ids, new_frames, new_len, strict=True):
                tokens[r].append(i)
                frames[r].append(f)
                durations[r].append(d)
            last_valid = ids.gather(1, (lengths - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
            last = torch.where(lengths > 0, last_valid, last)
        return DecoderStreamState(
            kind="ctc", frames_seen=offset + lengths, score=score, tokens=tokens, frames=frames, durations=durations,
            finished=state.finished.to(device) | _as_final(final, batch, device), ctc_last=last,
        )
