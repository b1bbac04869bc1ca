"""Greedy label looping with its loop bodies captured as CUDA graphs (offline decoding, GPU).

At batch 1-32 a transducer's greedy decoder on a GPU is bound by kernel launches, not arithmetic: every iteration
of :func:`~speechkit.decoding.greedy.label_loop` launches dozens of small kernels (joint, argmax, masked updates,
one LSTM step). :class:`GraphedGreedyDecoder` records each of the loop's four bodies once as a CUDA graph and then
replays them, one launch per body:

========== ============================================================================================
body       what it does (all rows at once, masked; the same decisions as ``label_loop``)
========== ============================================================================================
``start``  reset the results, the prediction network to its start state, ``t = 0``; ``active = t < end``
``outer``  one joint decision for the active rows; ``searching`` = found a blank and has frames left
``inner``  one more joint decision for the searching rows (the frame loop of label looping)
``emit``   append the labels found, one prediction-network step for those rows, the ``max_symbols`` guard
========== ============================================================================================

The host drives the loops, reading one boolean after ``outer``/``inner`` and one after ``emit`` (the "no while
loops" form: CUDA's conditional graph nodes would remove even those reads, at the cost of a CUDA 12.4+ driver
API that PyTorch does not expose).

**Static buffers.** A graph replays fixed memory addresses, so the decoder owns every tensor the bodies touch,
sized for a batch capacity ``B_cap`` and a frame capacity ``T_cap``. A call with ``B <= B_cap`` rows and ``T <=
T_cap`` frames copies its (projected) encoder output into the buffer; the rows ``B..B_cap`` get length 0 and stay
inactive. A larger call reallocates (``T_cap`` rounded up to a multiple of :attr:`GraphedGreedyDecoder.FRAME_STEP`)
and captures again (warm-up plus capture: several ordinary decoding steps' worth of time); decoding sorted or
bucketed batches captures a few times at most. Padding rows cost compute, so keep batches of similar size.

**Without a GPU** (``capture=False``, or any CPU tensor) the same bodies run eagerly on the same static buffers:
that is how the CPU tests check the bodies against :func:`~speechkit.decoding.greedy.greedy_transducer_decode`, and
the CUDA tests (``pytest -m cuda``) then check capture against eager execution.

Example:
    >>> import torch
    >>> from speechkit.losses.layout import JointLayout
    >>> from speechkit.modules.transducer import Joint, PredictionNetwork, PredictionState
    >>> pred = PredictionNetwork(16, hidden=32).eval()
    >>> joint = Joint(24, 32, hidden=32, layout=JointLayout.tdt(16, (0, 1, 2, 3, 4))).eval()
    >>> decoder = GraphedGreedyDecoder(pred, joint)  # captures on CUDA, runs eagerly on CPU
    >>> hyps = decoder(torch.randn(2, 20, 24), torch.tensor([20, 13]))
    >>> [h.num_frames for h in hyps]
    [20, 13]
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from speechkit.decoding.greedy import GreedyOptions, _check_inputs, _Rule
from speechkit.decoding.hypotheses import BatchedHyps, Hypothesis
from speechkit.modules.transducer import Joint, PredictionNetwork, PredictionState

__all__ = ["GraphedGreedyDecoder"]


class _StaticLoop:
    """The tensors label looping updates, allocated once for ``(batch, frames)`` rows and updated only in place."""

    def __init__(self, batch: int, frames: int, prediction: PredictionNetwork, joint: Joint, options: GreedyOptions,
                 device: torch.device, dtype: torch.dtype) -> None:
        self.prediction, self.joint, self.options = prediction, joint, options
        self.batch, self.frames = batch, frames
        self.rule = _Rule(joint.layout, options, device)
        self.vocab = joint.layout.vocab_size
        long = {"dtype": torch.long, "device": device}
        self.sos = torch.full((batch,), prediction.blank_id, **long)
        # Captured steps read this table (held here, so its memory outlives any rebuild of the network's cache); a
        # new table means new weights, and GraphedGreedyDecoder.matches then asks for a fresh capture.
        self.input_gates = prediction.input_gates()
        # The prediction network after the start id, the same for every utterance: computed once.
        g0, s0 = prediction.step(self.sos, prediction.init_state(batch, device, dtype), self.input_gates)
        self.pred0, self.h0, self.c0 = joint.project_prediction(g0), s0.h, s0.c  # (B, J), (L, B, H) x 2
        self.enc = torch.zeros(batch, frames, self.pred0.shape[-1], dtype=dtype, device=device)  # (B, T, J)
        self.end = torch.zeros(batch, **long)  # (B,) valid frames; 0 for padding rows
        self.rows = torch.arange(batch, **long)
        self.hyps = BatchedHyps.allocate(batch, frames * options.max_symbols, device,
                                         torch.promote_types(dtype, torch.float32))
        self.pred, self.h, self.c = self.pred0.clone(), self.h0.clone(), self.c0.clone()
        self.t, self.run, self.run_frame, self.frame = (torch.zeros(batch, **long) for _ in range(4))
        self.label, self.advance = torch.zeros(batch, **long), torch.zeros(batch, **long)
        flags = {"dtype": torch.bool, "device": device}
        self.active, self.was_active, self.searching = (torch.zeros(batch, **flags) for _ in range(3))
        self.any_active, self.any_searching = torch.zeros((), **flags), torch.zeros((), **flags)

    def _decide(self) -> tuple[Tensor, Tensor, Tensor]:
        last = (self.end - 1).clamp(min=0)
        return self.rule(self.joint.joint_after_projection(self.enc[self.rows, torch.minimum(self.t, last)],
                                                           self.pred))

    def start(self) -> None:
        self.hyps.lengths.zero_()
        self.hyps.scores.zero_()
        self.pred.copy_(self.pred0)
        self.h.copy_(self.h0)
        self.c.copy_(self.c0)
        self.t.zero_()
        self.run.zero_()
        self.run_frame.fill_(-1)
        torch.lt(self.t, self.end, out=self.active)
        torch.any(self.active, out=self.any_active)

    def outer(self) -> None:
        """The first decision of an outer (label) iteration."""
        self.was_active.copy_(self.active)
        self.frame.copy_(self.t)
        label, advance, log_prob = self._decide()
        self.hyps.add_scores(self.active, log_prob)
        self.label.copy_(label)
        self.advance.copy_(advance)
        torch.where(self.active, self.t + advance, self.t, out=self.t)
        self._update_searching()

    def inner(self) -> None:
        """One more decision for the rows that found a blank and still have frames (only the joint runs)."""
        torch.where(self.searching, self.t, self.frame, out=self.frame)
        label, advance, log_prob = self._decide()
        self.hyps.add_scores(self.searching, log_prob)
        torch.where(self.searching, label, self.label, out=self.label)
        torch.where(self.searching, advance, self.advance, out=self.advance)
        torch.where(self.searching, self.t + advance, self.t, out=self.t)
        self._update_searching()

    def _update_searching(self) -> None:
        torch.lt(self.t, self.end, out=self.active)
        torch.logical_and(self.active, self.label >= self.vocab, out=self.searching)
        torch.any(self.searching, out=self.any_searching)

    def emit(self) -> None:
        """Store the labels found this iteration, advance the prediction network for them, apply the guard."""
        found = self.was_active & (self.label < self.vocab)
        self.hyps.append(found, self.label, self.frame, self.advance)
        g, state = self.prediction.step(torch.where(found, self.label, self.sos), PredictionState(self.h, self.c),
                                        self.input_gates)
        keep = found.unsqueeze(1)
        torch.where(keep, self.joint.project_prediction(g), self.pred, out=self.pred)
        torch.where(keep.unsqueeze(0), state.h, self.h, out=self.h)
        torch.where(keep.unsqueeze(0), state.c, self.c, out=self.c)
        # max_symbols guard: the frame emitted max_symbols labels and time did not move -> go on one frame.
        same = self.frame == self.run_frame
        torch.where(found, torch.where(same, self.run + 1, torch.ones_like(self.run)), self.run, out=self.run)
        torch.where(found, self.frame, self.run_frame, out=self.run_frame)
        forced = found & (self.t == self.frame) & (self.run >= self.options.max_symbols)
        self.t.add_(forced.long())
        torch.lt(self.t, self.end, out=self.active)
        torch.any(self.active, out=self.any_active)


class GraphedGreedyDecoder:
    """Batched greedy transducer decoding (RNN-T, TDT, multi-blank) with CUDA-graph replay of the loop bodies.

    Gives the decisions of :func:`~speechkit.decoding.greedy.greedy_transducer_decode`; keep one instance per model
    and reuse it (:meth:`speechkit.modules.asr.TransducerASR.decode_encoded` does when
    ``GreedyOptions(cuda_graphs=True)``). The modules must stay where they are: moving them to another device or
    dtype needs a new decoder (:meth:`matches` says whether this one still fits).

    Args:
        prediction: the prediction network, in eval mode.
        joint: the joint, in eval mode.
        options: :class:`GreedyOptions` (``max_symbols``, ``big_blank_skip``; ``compact`` is ignored: graphs need
            the masked form).
        capture: record CUDA graphs. ``None``: when the modules are on a CUDA device. ``False`` runs the same
            bodies eagerly (CPU, debugging).
    """

    #: Frame capacity grows in steps of this many encoder frames (10.24 s at 80 ms a frame).
    FRAME_STEP = 128

    def __init__(self, prediction: PredictionNetwork, joint: Joint, options: GreedyOptions | None = None,
                 capture: bool | None = None) -> None:
        self.prediction, self.joint = prediction, joint
        self.options = options or GreedyOptions()
        param = next(joint.parameters())
        self.device, self.dtype = param.device, param.dtype
        if capture and self.device.type != "cuda":
            raise ValueError(f"capture=True needs the modules on a CUDA device; they are on {self.device}")
        self.capture = self.device.type == "cuda" if capture is None else capture
        self._loop: _StaticLoop | None = None
        self._graphs: dict[str, Callable[[], None]] = {}
        self.captures = 0  # how many times the bodies were (re)captured or (re)allocated

    def matches(self, options: GreedyOptions, device: torch.device, dtype: torch.dtype) -> bool:
        """Whether this decoder serves decoding with ``options`` of tensors on ``device`` in ``dtype``."""
        param = next(self.joint.parameters())
        return (param.device == self.device == device and param.dtype == self.dtype == dtype
                and (options.max_symbols, options.big_blank_skip)
                == (self.options.max_symbols, self.options.big_blank_skip)
                # weights changed since capture (e.g. training between validation passes): start values are stale
                and (self._loop is None or self._loop.input_gates is self.prediction.input_gates()))

    def __call__(self, encoder_out: Tensor, encoder_lengths: Tensor) -> list[Hypothesis]:
        """Decode ``encoder_out`` ``(B, T, D)`` with valid lengths ``(B,)`` in ``[0, T]``; one Hypothesis each."""
        lengths = _check_inputs(encoder_out, encoder_lengths)
        batch, frames, _ = encoder_out.shape
        if batch == 0:
            return []
        if encoder_out.device != self.device:
            raise ValueError(f"encoder_out is on {encoder_out.device}, the decoder's modules on {self.device}")
        with torch.inference_mode():
            loop = self._ensure(batch, frames)
            loop.enc[:batch, :frames].copy_(self.joint.project_encoder(encoder_out.to(self.dtype)))
            loop.end.zero_()
            loop.end[:batch].copy_(lengths)
            run = self._graphs
            run["start"]()
            while bool(loop.any_active):
                run["outer"]()
                while bool(loop.any_searching):
                    run["inner"]()
                run["emit"]()
            h = loop.hyps
            rows = BatchedHyps(h.labels[:batch], h.frames[:batch], h.durations[:batch], h.lengths[:batch],
                               h.scores[:batch])
            return rows.to_list(lengths, with_durations=self.joint.layout.kind == "tdt")

    def _ensure(self, batch: int, frames: int) -> _StaticLoop:
        loop = self._loop
        if loop is not None and batch <= loop.batch and frames <= loop.frames:
            return loop
        if loop is not None:  # grow to cover both the old and the new shape
            batch, frames = max(batch, loop.batch), max(frames, loop.frames)
        frames = -(-frames // self.FRAME_STEP) * self.FRAME_STEP
        self._loop = loop = _StaticLoop(batch, frames, self.prediction, self.joint, self.options, self.device,
                                        self.dtype)
        bodies = {"start": loop.start, "outer": loop.outer, "inner": loop.inner, "emit": loop.emit}
        self._graphs = self._record(bodies) if self.capture else bodies
        self.captures += 1
        return loop

    def _record(self, bodies: dict[str, Callable[[], None]]) -> dict[str, Callable[[], None]]:
        # Warm up on a side stream first (cuBLAS handles and workspaces are created outside the capture), as
        # torch.cuda.graph's documentation asks; the warm-up's writes are undone by the next start().
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for body in bodies.values():
                body()
        torch.cuda.current_stream(self.device).wait_stream(side)
        graphs: dict[str, Callable[[], None]] = {}
        pool = None
        for name, body in bodies.items():
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                body()
            pool = graph.pool()  # one memory pool for the four graphs
            graphs[name] = graph.replay
        return graphs
