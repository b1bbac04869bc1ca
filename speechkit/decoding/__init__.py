"""Decoding: batched greedy label looping for RNN-T / TDT / multi-blank transducers, CTC greedy, timestamps.

- :func:`greedy_transducer_decode` with :class:`GreedyOptions` -> list of :class:`Hypothesis`;
- :class:`GraphedGreedyDecoder`: the same decisions with the loop bodies replayed as CUDA graphs (GPU; keep one
  per model);
- :func:`ctc_greedy_decode` -> list of :class:`Hypothesis`;
- :func:`token_timestamps`, :func:`word_timestamps` (:mod:`speechkit.decoding.timestamps`);
- :class:`StreamingTransducerDecoder`, :class:`StreamingCTCDecoder` with :class:`DecoderStreamState`: the same
  greedy decisions chunk by chunk (:mod:`speechkit.decoding.streaming`);
- :mod:`speechkit.decoding.reference`: per-utterance frame-looping decoders, the specification for the tests.

Example:
    >>> import torch
    >>> from speechkit.losses.layout import JointLayout
    >>> from speechkit.modules.transducer import Joint, PredictionNetwork
    >>> pred = PredictionNetwork(16, hidden=32).eval()
    >>> joint = Joint(24, 32, hidden=32, layout=JointLayout.rnnt(16)).eval()
    >>> hyp = greedy_transducer_decode(torch.randn(1, 20, 24), torch.tensor([20]), pred, joint)[0]
    >>> spans = token_timestamps(hyp.frames, hyp.durations, subsampling_factor=8)
    >>> len(spans) == len(hyp.tokens)
    True
"""

from speechkit.decoding.cuda_graphs import GraphedGreedyDecoder
from speechkit.decoding.greedy import GreedyOptions, ctc_greedy_decode, greedy_transducer_decode
from speechkit.decoding.hypotheses import BatchedHyps, Hypothesis
from speechkit.decoding.streaming import DecoderStreamState, StreamingCTCDecoder, StreamingTransducerDecoder
from speechkit.decoding.timestamps import WordTimestamp, frame_seconds, token_timestamps, word_timestamps

__all__ = [
    "BatchedHyps",
    "DecoderStreamState",
    "GraphedGreedyDecoder",
    "GreedyOptions",
    "Hypothesis",
    "StreamingCTCDecoder",
    "StreamingTransducerDecoder",
    "WordTimestamp",
    "ctc_greedy_decode",
    "frame_seconds",
    "greedy_transducer_decode",
    "token_timestamps",
    "word_timestamps",
]
