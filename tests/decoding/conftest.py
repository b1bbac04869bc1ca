"""Tiny random transducers for the decoding tests, with blank logits biased so that blanks and labels both win.

Tests get the builders through fixtures (``make_model``, ``ragged_batch``): with ``--import-mode=importlib`` a test
module cannot import this file.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch

from speechkit.losses.layout import JointLayout
from speechkit.modules.transducer import Joint, PredictionNetwork

V, D, H, J = 12, 8, 16, 16

# name -> layout; the tests are parametrised over these
LAYOUTS = {
    "rnnt": JointLayout.rnnt(V),
    "tdt01234": JointLayout.tdt(V, (0, 1, 2, 3, 4)),
    "tdt124": JointLayout.tdt(V, (1, 2, 4)),
    "multiblank248": JointLayout.multiblank(V, (2, 4, 8)),
}


def _make_model(
    layout: JointLayout,
    *,
    seed: int = 0,
    blank_bias: float | None = None,
    duration_bias: Sequence[float] | None = None,
    dtype: torch.dtype = torch.float64,
) -> tuple[PredictionNetwork, Joint]:
    """A random prediction net + joint in eval mode.

    Args:
        layout: the joint layout.
        seed: weights seed.
        blank_bias: added to every blank logit (the blank and, for multi-blank, the big blanks). ``None`` calibrates
            it so that the blank wins the argmax about half of the time on random inputs.
        duration_bias: TDT: added to the duration logits.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    pred = PredictionNetwork(layout.vocab_size, hidden=H, num_layers=2, dropout=0.0)
    joint = Joint(D, H, J, layout=layout, dropout=0.0)
    pred, joint = pred.to(dtype).eval(), joint.to(dtype).eval()
    blanks = slice(layout.vocab_size, layout.num_token_classes)
    with torch.no_grad():
        joint.out.weight.mul_(4.0)  # logits that depend on the inputs more than on the biases
        joint.out.bias.zero_()
        if blank_bias is None:
            # realistic prediction outputs: the network run over random label sequences
            labels = torch.randint(0, layout.vocab_size, (32, 8), generator=gen)
            g = pred(labels, torch.full((32,), 8)).reshape(-1, H)  # (32 * 9, H)
            f = torch.randn(g.shape[0], D, generator=gen, dtype=dtype)
            z = joint.joint_after_projection(joint.project_encoder(f), joint.project_prediction(g))
            margin = z[:, : layout.vocab_size].max(-1).values - z[:, blanks].max(-1).values
            blank_bias = float(margin.median())
        joint.out.bias[blanks] += blank_bias
        if duration_bias is not None:
            joint.out.bias[layout.duration_slice] += torch.tensor(duration_bias, dtype=dtype)
    return pred, joint


def _ragged_batch(batch: int, max_t: int, *, seed: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor,
                                                                                                      torch.Tensor]:
    """Encoder output ``(B, T, D)`` and lengths in ``[0, T]`` (one utterance always full length)."""
    gen = torch.Generator().manual_seed(1000 + seed)
    f = torch.randn(batch, max_t, D, generator=gen, dtype=dtype)
    lengths = torch.randint(0, max_t + 1, (batch,), generator=gen)
    lengths[int(torch.randint(0, batch, (1,), generator=gen))] = max_t
    return f, lengths


@pytest.fixture(params=list(LAYOUTS), ids=list(LAYOUTS))
def layout(request: pytest.FixtureRequest) -> JointLayout:
    return LAYOUTS[request.param]


@pytest.fixture
def make_model():
    return _make_model


@pytest.fixture
def ragged_batch():
    return _ragged_batch


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a busy machine the thread hand-offs cost 10x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
