"""Decoding results: :class:`Hypothesis` per utterance and the preallocated :class:`BatchedHyps` the batched
greedy decoders write into without host synchronisation.

Frame indices count encoder frames (after subsampling); :mod:`speechkit.decoding.timestamps` turns them into
seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["BatchedHyps", "Hypothesis"]


@dataclass
class Hypothesis:
    """One utterance's decoding result.

    Attributes:
        tokens: emitted token ids, in order.
        frames: encoder frame at which each token was emitted (CTC: the first frame of its run).
        durations: frames each token covers: the predicted duration for TDT (may be 0), the run length for CTC,
            ``None`` for RNN-T and multi-blank (a token is emitted at one frame and takes no time).
        score: log-probability of the decisions the greedy decoder took; see the decoder's docstring.
        num_frames: the utterance's encoder length.
    """

    tokens: list[int]
    frames: list[int]
    durations: list[int] | None
    score: float
    num_frames: int

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass
class BatchedHyps:
    """Preallocated label storage for batched label-looping decoding.

    Every tensor stays on the decoding device; :meth:`append` writes with index ops only, so the decoding loop needs
    no host round-trip. Each row has one spare slot past ``capacity``: rows that append nothing in a step still
    write (garbage) at their current length, which keeps the write unmasked and cheap.

    Attributes:
        labels: ``(B, capacity + 1)`` token ids.
        frames: ``(B, capacity + 1)`` frame indices.
        durations: ``(B, capacity + 1)`` token durations (TDT; zeros otherwise).
        lengths: ``(B,)`` tokens stored per row.
        scores: ``(B,)`` accumulated log-probabilities.
    """

    labels: Tensor
    frames: Tensor
    durations: Tensor
    lengths: Tensor
    scores: Tensor

    @classmethod
    def allocate(cls, batch: int, capacity: int, device: torch.device, score_dtype: torch.dtype) -> BatchedHyps:
        """Empty storage for ``batch`` rows of at most ``capacity`` tokens each."""
        shape = (batch, capacity + 1)
        return cls(
            labels=torch.zeros(shape, dtype=torch.long, device=device),
            frames=torch.zeros(shape, dtype=torch.long, device=device),
            durations=torch.zeros(shape, dtype=torch.long, device=device),
            lengths=torch.zeros(batch, dtype=torch.long, device=device),
            scores=torch.zeros(batch, dtype=score_dtype, device=device),
        )

    @property
    def capacity(self) -> int:
        return self.labels.shape[1] - 1

    def append(self, mask: Tensor, labels: Tensor, frames: Tensor, durations: Tensor | None = None) -> None:
        """Append one token to the rows where ``mask`` is true.

        Args:
            mask: ``(B,)`` bool.
            labels, frames, durations: ``(B,)``; ignored where ``mask`` is false.
        """
        rows = torch.arange(self.lengths.shape[0], device=self.lengths.device)
        # Unmasked rows write past their length (at most into the spare slot), where nothing is read.
        pos = self.lengths.clamp(max=self.capacity)
        self.labels[rows, pos] = labels
        self.frames[rows, pos] = frames
        if durations is not None:
            self.durations[rows, pos] = durations
        self.lengths += mask.long()

    def add_scores(self, mask: Tensor, scores: Tensor) -> None:
        """``scores[b] += scores_step[b]`` where ``mask[b]``; ``(B,)`` each."""
        torch.where(mask, self.scores + scores, self.scores, out=self.scores)

    def to_list(self, num_frames: Tensor, with_durations: bool) -> list[Hypothesis]:
        """Copy to the host (one transfer) and cut each row at its length.

        Args:
            num_frames: ``(B,)`` encoder lengths.
            with_durations: fill :attr:`Hypothesis.durations` (TDT) or leave it ``None``.
        """
        n = int(self.lengths.max()) if self.lengths.numel() else 0
        labels = self.labels[:, :n].tolist()
        frames = self.frames[:, :n].tolist()
        durations = self.durations[:, :n].tolist()
        lengths = self.lengths.tolist()
        scores = self.scores.tolist()
        nf = num_frames.tolist()
        return [
            Hypothesis(
                tokens=labels[b][:k],
                frames=frames[b][:k],
                durations=durations[b][:k] if with_durations else None,
                score=scores[b],
                num_frames=int(nf[b]),
            )
            for b, k in enumerate(lengths)
        ]
