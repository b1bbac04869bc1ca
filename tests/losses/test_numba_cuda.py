"""The Numba CUDA loss kernels against the PyTorch reference, golden values and their own invariants.

Without a GPU, ``tests/conftest.py`` turns on Numba's CUDA simulator, which runs every GPU thread as a Python thread:
these tests then use CPU tensors, tiny shapes and blocks of 2-4 threads (so that ``u`` tiling and class striding
are exercised). On a machine with a GPU the same tests run on CUDA tensors, and the ``cuda``-marked tests add large
shapes (U > 1024), half precision at size and stream ordering.
"""

from __future__ import annotations

import inspect
import math
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from speechkit.losses import reference

nc = pytest.importorskip("speechkit.losses.numba_cuda")
if not nc.SIMULATED and not torch.cuda.is_available():
    pytest.skip("numba_cuda needs a GPU or NUMBA_ENABLE_CUDASIM=1", allow_module_level=True)
# Module level on purpose: the simulator swaps the module-global ``cuda`` of a kernel for its fake one.
from numba import cuda  # noqa: E402

DEVICE = torch.device("cpu" if nc.SIMULATED else "cuda")
TINY = nc.LaunchConfig(row_threads=4, wavefront_threads=4)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True, scope="module")
def _fast_thread_switching() -> Iterator[None]:
    """The simulator blocks threads at every syncthreads and polls them under the GIL; switching threads every
    10 microseconds instead of every 5 ms makes its kernels about 10x faster."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(old)


# -------------------------------------------------------------------------------------------------------------------
# Helpers
# -------------------------------------------------------------------------------------------------------------------


def _case(
    batch: int, t: int, u1: int, k: int, logit_lengths: list[int], target_lengths: list[int], tokens: range, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random logits (B, T, U1, K) and labels drawn from ``tokens``; targets past each length are -1."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, t, u1, k, generator=g) * 1.5
    targets = torch.tensor(list(tokens))[torch.randint(0, len(tokens), (batch, max(u1 - 1, 0)), generator=g)]
    for b, n in enumerate(target_lengths):
        targets[b, n:] = -1  # the kernels must never read past a sample's labels
    return (logits.to(DEVICE), targets.to(DEVICE), torch.tensor(logit_lengths, device=DEVICE),
            torch.tensor(target_lengths, device=DEVICE))


def _reference(kind: str, logits: torch.Tensor, targets: torch.Tensor, tl: torch.Tensor, ll: torch.Tensor,
               blank: int, durations: tuple[int, ...] = (), sigma: float = 0.0, lam: float = 0.0,
               clamp: float = -1.0, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reference costs, gradients (autograd, in ``dtype``) and log-alphas."""
    x = logits.detach().to(dtype).requires_grad_(True)
    if kind == "rnnt":
        lat = reference.rnnt_lattice(x, targets, tl, ll, blank, lam, clamp)
    elif kind == "tdt":
        lat = reference.tdt_lattice(x, targets, tl, ll, durations, blank, sigma, lam, clamp)
    else:
        lat = reference.multiblank_lattice(x, targets, tl, ll, durations, blank, sigma, lam, clamp)
    costs = -(1.0 + lam) * lat.log_prob
    (-lat.log_prob).sum().backward()
    return costs.detach(), x.grad, lat.log_alpha.detach()


def _valid(tl: torch.Tensor, ll: torch.Tensor, t: int, u1: int) -> torch.Tensor:
    tt = torch.arange(t, device=tl.device).view(1, t, 1)
    uu = torch.arange(u1, device=tl.device).view(1, 1, u1)
    return (tt < tl.view(-1, 1, 1)) & (uu <= ll.view(-1, 1, 1))


def _check_against_reference(kind: str, logits: torch.Tensor, targets: torch.Tensor, tl: torch.Tensor,
                             ll: torch.Tensor, blank: int, durations: tuple[int, ...] = (), sigma: float = 0.0,
                             lam: float = 0.0, clamp: float = -1.0, launch: nc.LaunchConfig = TINY,
                             cost_rtol: float = 1e-6, grad_atol: float = 1e-4,
                             ref_dtype: torch.dtype = torch.float32) -> nc.KernelOutputs:
    out = nc.transducer_kernels(logits, targets, tl, ll, kind=kind, blank=blank, durations=durations, sigma=sigma,
                                fastemit_lambda=lam, clamp=clamp, launch=launch)
    ref_costs, ref_grads, ref_alpha = _reference(kind, logits, targets, tl, ll, blank, durations, sigma, lam, clamp,
                                                 dtype=ref_dtype)
    torch.testing.assert_close(out.costs, ref_costs.float(), rtol=cost_rtol, atol=1e-5)
    assert out.grads is not None and out.grads.dtype == logits.dtype and out.grads.shape == logits.shape
    torch.testing.assert_close(out.grads.float(), ref_grads.float(), rtol=0, atol=grad_atol)
    valid = _valid(tl, ll, logits.shape[1], logits.shape[2])
    torch.testing.assert_close(out.alphas[valid], ref_alpha[valid].float(), rtol=max(cost_rtol, 1e-5), atol=1e-4)
    # beta(0, 0) is log P computed the other way round.
    torch.testing.assert_close(out.log_likelihood_backward, out.log_likelihood, rtol=1e-5, atol=1e-5)
    assert torch.all(out.grads[~valid] == 0), "padded cells must get zero gradient"
    return out


# -------------------------------------------------------------------------------------------------------------------
# Golden values (transducers.md section 10)
# -------------------------------------------------------------------------------------------------------------------


def test_rnnt_golden_small() -> None:
    z = torch.tensor([[[[.1, .6, .1, .1, .1], [.1, .1, .6, .1, .1], [.1, .1, .2, .8, .1]],
                       [[.1, .6, .1, .1, .1], [.1, .1, .2, .1, .1], [.7, .1, .2, .1, .1]]]], device=DEVICE)
    expected = torch.tensor([[[[-.13116688, -.3999269, .17703125, .17703125, .17703125],
                               [-.18572757, .12247056, -.18168412, .12247056, .12247056],
                               [-.32091254, .06269141, .06928472, .12624499, .06269141]],
                              [[.05456069, -.21824276, .05456069, .05456069, .05456069],
                               [.12073959, .12073959, -.48295835, .12073959, .12073959],
                               [-.6925882, .16871116, .18645467, .16871116, .16871116]]]], device=DEVICE)
    costs, grads = nc.rnnt_cost_grad(z, torch.tensor([[1, 2]], device=DEVICE), torch.tensor([2], device=DEVICE),
                                     torch.tensor([2], device=DEVICE), 0, 0.0, -1.0, True, launch=TINY)
    assert costs.dtype == torch.float32 and costs.shape == (1,)
    assert costs.item() == pytest.approx(4.495666, abs=1e-5)
    torch.testing.assert_close(grads, expected, rtol=0, atol=1e-6)


def test_tdt_golden_fixed_case() -> None:
    expected = torch.tensor([[[[-.649628, .25, .25, .149628, .267258, -.167926, -.099332],
                               [.016519, .016519, .016519, -.049556, .022025, -.012272, -.009753]],
                              [[-.048927, .017149, .017149, .014629, -.011432, -.011432, .022865],
                               [.125315, .125315, .125315, -.375945, .167087, .13027, -.297357]],
                              [[-.025723, .008574, .008574, .008574, -.022865, .011432, .011432],
                               [.133889, .133889, .133889, -.401667, .178519, -.357038, .178519]]]], device=DEVICE)
    costs, grads = nc.tdt_cost_grad(torch.zeros(1, 3, 2, 7, device=DEVICE), torch.tensor([[0]], device=DEVICE),
                                    torch.tensor([3], device=DEVICE), torch.tensor([1], device=DEVICE), 3, (0, 1, 2),
                                    0.05, 0.0, -1.0, True, launch=TINY)
    assert costs.item() == pytest.approx(4.155739, abs=1e-5)
    torch.testing.assert_close(grads, expected, rtol=0, atol=2e-6)


def test_rnnt_matches_torchaudio() -> None:
    torchaudio_f = pytest.importorskip("torchaudio.functional")
    logits, targets, tl, ll = _case(2, 5, 4, 5, [5, 3], [3, 1], range(4), seed=1)
    costs, grads = nc.rnnt_cost_grad(logits, targets, tl, ll, 4, 0.0, -1.0, True, launch=TINY)
    x = logits.detach().cpu().requires_grad_(True)
    ta_targets = targets.cpu().clamp(min=0).int()
    ta = torchaudio_f.rnnt_loss(x, ta_targets, tl.cpu().int(), ll.cpu().int(), blank=4, reduction="none")
    ta.sum().backward()
    torch.testing.assert_close(costs.cpu(), ta.detach(), rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(grads.cpu(), x.grad, rtol=0, atol=1e-5)


# -------------------------------------------------------------------------------------------------------------------
# Against the reference
# -------------------------------------------------------------------------------------------------------------------

# (kind, K, tokens, blank, durations, sigma, fastemit_lambda, clamp)
REFERENCE_CASES = {
    "rnnt": ("rnnt", 5, range(4), 4, (), 0.0, 0.0, -1.0),
    "rnnt-blank0-fastemit-clamp": ("rnnt", 5, range(1, 5), 0, (), 0.0, 0.5, 0.08),
    "tdt-0123-sigma": ("tdt", 4 + 4, range(3), 3, (0, 1, 2, 3), 0.05, 0.0, -1.0),
    "tdt-no-zero-fastemit-clamp": ("tdt", 4 + 3, range(3), 3, (1, 2, 4), 0.02, 0.3, 0.1),
    "multiblank-sigma": ("multiblank", 6, range(3), 5, (2, 3), 0.1, 0.0, -1.0),
    "multiblank-fastemit-clamp": ("multiblank", 6, range(3), 5, (2, 4), 0.05, 0.2, 0.1),
}


@pytest.mark.parametrize("case", list(REFERENCE_CASES))
def test_matches_reference_ragged(case: str) -> None:
    kind, k, tokens, blank, durations, sigma, lam, clamp = REFERENCE_CASES[case]
    # T and U+1 are padded beyond the longest sample: the kernels must honour the lengths, not the shapes.
    logits, targets, tl, ll = _case(2, 5, 4, k, [4, 2], [2, 1], tokens, seed=sum(map(ord, case)))
    _check_against_reference(kind, logits, targets, tl, ll, blank, durations, sigma, lam, clamp)


@pytest.mark.parametrize("kind", ["rnnt", "tdt", "multiblank"])
def test_u_tiled_over_a_small_block(kind: str) -> None:
    """U+1 = 7 rows over 2 or 3 wavefront threads (the u loop wraps several times): bit-identical results, since
    each cell is computed the same way whichever thread owns it. Row blocks of 1 thread instead of 2 change only
    the summation order of the softmax denominators."""
    k, blank, durations = {"rnnt": (4, 3, ()), "tdt": (4 + 3, 3, (0, 1, 2)), "multiblank": (5, 4, (2,))}[kind]
    logits, targets, tl, ll = _case(1, 3, 7, k, [3], [6], range(3), seed=7)
    first = _check_against_reference(kind, logits, targets, tl, ll, blank, durations, sigma=0.03,
                                     launch=nc.LaunchConfig(row_threads=2, wavefront_threads=2))
    again = nc.transducer_kernels(logits, targets, tl, ll, kind=kind, blank=blank, durations=durations, sigma=0.03,
                                  launch=nc.LaunchConfig(row_threads=2, wavefront_threads=3))
    assert torch.equal(again.costs, first.costs) and torch.equal(again.grads, first.grads)
    serial = nc.transducer_kernels(logits, targets, tl, ll, kind=kind, blank=blank, durations=durations, sigma=0.03,
                                   launch=nc.LaunchConfig(row_threads=1, wavefront_threads=3))
    torch.testing.assert_close(serial.costs, first.costs, rtol=1e-6, atol=0)
    torch.testing.assert_close(serial.grads, first.grads, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["rnnt", "tdt", "multiblank"])
def test_edge_lengths_single_row_and_single_frame(kind: str) -> None:
    """U+1 = 1 (no labels: targets has no columns) in one batch, T_b = 1 in another."""
    k, blank, durations = {"rnnt": (4, 3, ()), "tdt": (4 + 3, 3, (0, 1, 2)), "multiblank": (5, 4, (2,))}[kind]
    logits, targets, tl, ll = _case(2, 3, 1, k, [3, 1], [0, 0], range(3), seed=3)
    assert targets.shape == (2, 0)
    _check_against_reference(kind, logits, targets, tl, ll, blank, durations)
    # T_b = 1 with labels: only d=0 label arcs (TDT) or same-frame labels (RNN-T) can emit them.
    logits, targets, tl, ll = _case(2, 1, 3, k, [1, 1], [2, 1], range(3), seed=4)
    _check_against_reference(kind, logits, targets, tl, ll, blank, durations)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", ["rnnt", "tdt"])
def test_half_precision_inputs(kind: str, dtype: torch.dtype) -> None:
    """float16 / bfloat16 logits are read in place; the costs match the float32 reference on the same values and
    the gradient comes back in the input dtype, rounded once."""
    k, blank, durations = {"rnnt": (5, 4, ()), "tdt": (4 + 3, 3, (0, 1, 2))}[kind]
    logits, targets, tl, ll = _case(2, 4, 3, k, [4, 3], [2, 1], range(3), seed=11)
    low = logits.to(dtype)
    out = nc.transducer_kernels(low, targets, tl, ll, kind=kind, blank=blank, durations=durations, sigma=0.05,
                                launch=TINY)
    ref_costs, ref_grads, _ = _reference(kind, low.float(), targets, tl, ll, blank, durations, sigma=0.05)
    torch.testing.assert_close(out.costs, ref_costs, rtol=1e-6, atol=1e-5)
    assert out.grads is not None and out.grads.dtype == dtype
    # One rounding of the float32 gradient to the storage format: at most half an ulp, plus float32 noise.
    torch.testing.assert_close(out.grads.float(), ref_grads.to(dtype).float(), rtol=2 ** -7 if dtype ==
                               torch.bfloat16 else 2 ** -10, atol=1e-4)


def test_bfloat16_round_trip_matches_torch() -> None:
    """The kernels' bf16 load/store bit tricks agree with PyTorch's conversion (ties to even, NaN, inf, -0)."""
    @cuda.jit
    def round_trip(src, bits_out, back_out):
        k = cuda.grid(1)
        if k < src.shape[3]:
            nc._store_bf16(bits_out, 0, 0, 0, k, src[0, 0, 0, k])
            back_out[0, 0, 0, k] = nc._load_bf16(bits_out, 0, 0, 0, k)

    values = [0.0, -0.0, 1.0, -1.0, 1.00390625, 1.005859375, 1.0078125 + 2 ** -9, 3.14159, -2.71828, 1e-40, -1e-40,
              3.4e38, -3.4e38, 3.3961776e38, float("inf"), float("-inf"), float("nan"), 65504.0, 1e-8, 0.333333]
    src = torch.tensor(values, dtype=torch.float32, device=DEVICE).view(1, 1, 1, -1)
    bits = torch.empty(src.shape, dtype=torch.bfloat16, device=DEVICE)
    back = torch.empty(src.shape, dtype=torch.float32, device=DEVICE)
    n = src.shape[3]
    round_trip[1, n](nc._kernel_array(src), nc._kernel_array(bits), nc._kernel_array(back))
    expected = src.to(torch.bfloat16)
    torch.testing.assert_close(bits, expected, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(back, expected.float(), rtol=0, atol=0, equal_nan=True)
    assert torch.signbit(back[0, 0, 0, 1]), "-0 keeps its sign"


def test_strided_token_view_is_read_in_place() -> None:
    """The TDT omega branch passes logits[..., :V+1], a view whose rows are longer than its last dimension."""
    logits, targets, tl, ll = _case(2, 3, 3, 4 + 3, [3, 2], [2, 1], range(3), seed=5)
    before = logits.clone()
    view = logits[..., :4]
    assert not view.is_contiguous()
    costs, grads = nc.rnnt_cost_grad(view, targets, tl, ll, 3, 0.0, -1.0, True, launch=TINY)
    ref_costs, ref_grads = nc.rnnt_cost_grad(view.contiguous(), targets, tl, ll, 3, 0.0, -1.0, True, launch=TINY)
    torch.testing.assert_close(costs, ref_costs, rtol=0, atol=0)
    assert grads is not None and grads.shape == view.shape and grads.is_contiguous()
    torch.testing.assert_close(grads, ref_grads, rtol=0, atol=0)
    assert torch.equal(logits, before), "the input must not be written"
    for dtype in (torch.float16, torch.bfloat16):
        low = logits.to(dtype)
        c_view, g_view = nc.rnnt_cost_grad(low[..., :4], targets, tl, ll, 3, 0.0, -1.0, True, launch=TINY)
        c_copy, g_copy = nc.rnnt_cost_grad(low[..., :4].contiguous(), targets, tl, ll, 3, 0.0, -1.0, True,
                                           launch=TINY)
        torch.testing.assert_close(c_view, c_copy, rtol=0, atol=0)
        torch.testing.assert_close(g_view, g_copy, rtol=0, atol=0)


def test_without_gradient_and_with_garbage_padding() -> None:
    """need_grad=False skips the backward kernels; padded cells may hold inf/NaN without affecting anything."""
    logits, targets, tl, ll = _case(2, 4, 3, 6, [4, 2], [2, 1], range(3), seed=9)
    clean = nc.transducer_kernels(logits, targets, tl, ll, kind="multiblank", blank=5, durations=(2, 3), sigma=0.1,
                                  launch=TINY)
    dirty_logits = logits.clone()
    dirty_logits[1, 2:] = float("nan")
    dirty_logits[1, :, 2:] = float("inf")
    dirty = nc.transducer_kernels(dirty_logits, targets, tl, ll, kind="multiblank", blank=5, durations=(2, 3),
                                  sigma=0.1, launch=TINY)
    torch.testing.assert_close(dirty.costs, clean.costs, rtol=0, atol=0)
    torch.testing.assert_close(dirty.grads, clean.grads, rtol=0, atol=0)
    costs, grads = nc.multiblank_cost_grad(logits, targets, tl, ll, 5, (2, 3), 0.1, 0.0, -1.0, False, launch=TINY)
    assert grads is None
    torch.testing.assert_close(costs, clean.costs, rtol=0, atol=0)


def test_impossible_alignment_gives_inf_cost_and_zero_gradient() -> None:
    """TDT without duration 0 cannot emit 3 labels in 2 frames: cost +inf, gradient 0 (not NaN)."""
    logits, targets, tl, ll = _case(2, 2, 4, 4 + 2, [2, 2], [3, 1], range(3), seed=2)
    out = nc.transducer_kernels(logits, targets, tl, ll, kind="tdt", blank=3, durations=(1, 2), launch=TINY)
    assert math.isinf(out.costs[0].item()) and out.costs[0].item() > 0
    assert math.isfinite(out.costs[1].item())
    assert out.grads is not None
    assert torch.all(out.grads[0] == 0) and torch.isfinite(out.grads).all()
    ref_costs, ref_grads, _ = _reference("tdt", logits, targets, tl, ll, 3, (1, 2))
    torch.testing.assert_close(out.costs, ref_costs, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(out.grads[1], ref_grads[1], rtol=0, atol=1e-4)


def test_int32_targets_and_lengths() -> None:
    """int32 targets and lengths give the same result as int64."""
    logits, targets, tl, ll = _case(3, 2, 2, 4, [2, 1, 2], [1, 1, 0], range(3), seed=12)
    a = nc.transducer_kernels(logits, targets, tl, ll, kind="rnnt", blank=3, launch=TINY)
    b = nc.transducer_kernels(logits, targets.int(), tl.int(), ll.int(), kind="rnnt", blank=3, launch=TINY)
    torch.testing.assert_close(a.costs, b.costs, rtol=0, atol=0)
    torch.testing.assert_close(a.grads, b.grads, rtol=0, atol=0)


# -------------------------------------------------------------------------------------------------------------------
# Contract, errors, plumbing
# -------------------------------------------------------------------------------------------------------------------


def test_backend_contract_signatures() -> None:
    expected = {
        "rnnt_cost_grad": ["logits", "targets", "logit_lengths", "target_lengths", "blank", "fastemit_lambda",
                           "clamp", "need_grad"],
        "tdt_cost_grad": ["logits", "targets", "logit_lengths", "target_lengths", "blank", "durations", "sigma",
                          "fastemit_lambda", "clamp", "need_grad"],
        "multiblank_cost_grad": ["logits", "targets", "logit_lengths", "target_lengths", "blank",
                                 "big_blank_durations", "sigma", "fastemit_lambda", "clamp", "need_grad"],
    }
    for name, params in expected.items():
        sig = inspect.signature(getattr(nc, name))
        positional = [p.name for p in sig.parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
        assert positional == params, name


def test_the_backend_table_finds_this_module() -> None:
    from speechkit.losses import backends

    name, impl = backends.get_backend("numba_cuda", DEVICE)
    assert name == "numba_cuda" and impl is nc


def test_bad_inputs_raise_clear_errors() -> None:
    logits, targets, tl, ll = _case(1, 2, 2, 4, [2], [1], range(3), seed=0)
    with pytest.raises(ValueError, match="logits must be 4-D"):
        nc.rnnt_cost_grad(logits[0], targets, tl, ll, 3, 0.0, -1.0, True)
    with pytest.raises(ValueError, match="float32, float16 or bfloat16"):
        nc.rnnt_cost_grad(logits.double(), targets, tl, ll, 3, 0.0, -1.0, True)
    with pytest.raises(ValueError, match="targets must be a 2-D"):
        nc.rnnt_cost_grad(logits, targets.float(), tl, ll, 3, 0.0, -1.0, True)
    with pytest.raises(ValueError, match="blank=7"):
        nc.rnnt_cost_grad(logits, targets, tl, ll, 7, 0.0, -1.0, True)
    with pytest.raises(ValueError, match="big blanks"):
        nc.multiblank_cost_grad(logits, targets, tl, ll, 1, (2, 3), 0.0, 0.0, -1.0, True)
    with pytest.raises(ValueError, match="row_threads must be a power of two"):
        nc.LaunchConfig(row_threads=3)
    if nc.SIMULATED:
        meta = torch.zeros(1, 2, 2, 4, device="meta")
        with pytest.raises(ValueError, match="simulator"):
            nc.rnnt_cost_grad(meta, targets, tl, ll, 3, 0.0, -1.0, True)


@pytest.mark.skipif(not nc.SIMULATED, reason="on a GPU the kernels are compiled for real by the other tests")
def test_kernels_compile_for_a_real_gpu() -> None:
    """Type and lower every kernel to PTX for sm_90 (no GPU needed, only libNVVM): the simulator runs the kernels
    as Python, so it cannot catch what numba's CUDA compiler rejects (it rejected the builtin max, for one)."""
    script = textwrap.dedent("""
        import sys, types, numba.cuda.dispatcher as dispatcher
        from numba import cuda, types as nt
        if not hasattr(dispatcher, "get_current_device"):
            sys.exit(3)
        # Device functions ask the current device for its compute capability; there is none here.
        dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=(9, 0))
        from speechkit.losses import numba_cuda as nc
        assert not nc.SIMULATED
        A = lambda dt, nd: nt.Array(dt, nd, "A")
        f32, i64 = nt.float32, nt.int64
        ints = (A(i64, 2), A(i64, 1), A(i64, 1), i64, A(nt.int32, 1), i64, f32)
        for store, bf16 in ((f32, False), (nt.float16, False), (nt.int16, True)):
            z, g = A(store, 4), A(store, 4)
            ks = nc._lattice_kernels(bf16)
            sigs = [
                (nc._denominator_kernel(bf16, 128), (z, i64, A(i64, 1), A(i64, 1), A(f32, 3), A(f32, 4))),
                (ks.alphas_multiblank, (z, A(f32, 3)) + ints + (A(f32, 3), A(f32, 1))),
                (ks.betas_multiblank, (z, A(f32, 3)) + ints + (A(f32, 3), A(f32, 1))),
                (ks.grads_multiblank, (z, A(f32, 3), A(f32, 3), A(f32, 3), A(f32, 1)) + ints + (f32, f32, g)),
                (ks.alphas_tdt, (z, A(f32, 3), A(f32, 4)) + ints + (A(f32, 3), A(f32, 1))),
                (ks.betas_tdt, (z, A(f32, 3), A(f32, 4)) + ints + (A(f32, 3), A(f32, 1))),
                (ks.grads_tdt, (z, A(f32, 3), A(f32, 4), A(f32, 3), A(f32, 3), A(f32, 1)) + ints + (f32, f32, g)),
                (nc._costs_kernel, (A(f32, 1), f32, A(f32, 1))),
            ]
            for kernel, sig in sigs:
                ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=(9, 0))
                # All arithmetic is float32: a stray Python float would promote it to slow float64.
                assert ".f64" not in ptx, (kernel.py_func.__name__, store)
        print("compiled")
    """)
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode == 3:
        pytest.skip("this numba has no dispatcher.get_current_device to stand in for a GPU")
    if proc.returncode != 0 and ("NVVM" in proc.stderr or "libnvvm" in proc.stderr.lower()):
        pytest.skip(f"libNVVM is not installed: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0 and "compiled" in proc.stdout, proc.stderr[-3000:]


# -------------------------------------------------------------------------------------------------------------------
# Real GPU only
# -------------------------------------------------------------------------------------------------------------------

gpu_only = pytest.mark.skipif(nc.SIMULATED, reason="needs a real GPU (the simulator is on)")


@pytest.mark.cuda
@gpu_only
@pytest.mark.parametrize("kind", ["rnnt", "tdt", "multiblank"])
def test_cuda_no_label_length_cap(kind: str) -> None:
    """U+1 = 1100 > 1024 threads: NeMo's kernels cannot launch this, ours tile u over the block.

    log P is about -2000 here, so float32 rounding along 1100 steps costs a few 1e-3 nats (NeMo's kernels are no
    better): the reference runs in float64 and the tolerances are loose. Wrong tiling would be off by O(1); the
    exact check is that 1024 threads (one pass) and 256 threads (five tiles) give bit-identical results."""
    k, blank, durations = {"rnnt": (6, 5, ()), "tdt": (6 + 5, 5, (0, 1, 2, 3, 4)), "multiblank": (7, 6, (2, 4))}[kind]
    logits, targets, tl, ll = _case(2, 6, 1100, k, [6, 4], [1099, 700], range(5), seed=21)
    tiled = _check_against_reference(kind, logits, targets, tl, ll, blank, durations, sigma=0.02,
                                     launch=nc.LaunchConfig(wavefront_threads=256), cost_rtol=2e-5, grad_atol=1e-2,
                                     ref_dtype=torch.float64)
    wide = nc.transducer_kernels(logits, targets, tl, ll, kind=kind, blank=blank, durations=durations, sigma=0.02,
                                 launch=nc.LaunchConfig(wavefront_threads=1024))
    assert torch.equal(wide.costs, tiled.costs) and torch.equal(wide.grads, tiled.grads)


@pytest.mark.cuda
@gpu_only
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", ["rnnt", "tdt", "multiblank"])
def test_cuda_half_precision_at_size(kind: str, dtype: torch.dtype) -> None:
    k, blank, durations = {"rnnt": (129, 128, ()), "tdt": (129 + 5, 128, (0, 1, 2, 3, 4)),
                           "multiblank": (131, 130, (2, 4))}[kind]
    logits, targets, tl, ll = _case(4, 40, 12, k, [40, 31, 17, 9], [11, 7, 5, 0], range(128), seed=22)
    low = logits.to(dtype)
    out = nc.transducer_kernels(low, targets, tl, ll, kind=kind, blank=blank, durations=durations, sigma=0.05,
                                fastemit_lambda=0.01, clamp=0.5)
    ref_costs, ref_grads, _ = _reference(kind, low.float(), targets, tl, ll, blank, durations, 0.05, 0.01, 0.5)
    torch.testing.assert_close(out.costs, ref_costs, rtol=1e-5, atol=1e-3)
    assert out.grads is not None and out.grads.dtype == dtype
    torch.testing.assert_close(out.grads.float(), ref_grads.to(dtype).float(),
                               rtol=2 ** -7 if dtype == torch.bfloat16 else 2 ** -10, atol=1e-4)


@pytest.mark.cuda
@gpu_only
def test_cuda_runs_on_the_current_stream() -> None:
    """Kernels launched on a side stream see the side stream's pending writes and finish before its later work."""
    logits, targets, tl, ll = _case(4, 64, 16, 257, [64, 50, 33, 20], [15, 10, 8, 3], range(256), seed=23)
    expected = nc.transducer_kernels(logits, targets, tl, ll, kind="rnnt", blank=256)
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        src = torch.zeros_like(logits)
        # Keep the stream busy so that a launch on the wrong stream would read the zeros, not the logits.
        busy = torch.randn(4096, 4096, device=DEVICE)
        for _ in range(20):
            busy = busy @ busy
            busy = busy / busy.norm()
        src.copy_(logits)
        out = nc.transducer_kernels(src, targets, tl, ll, kind="rnnt", blank=256)
        total = out.costs.sum()
    side.synchronize()
    torch.testing.assert_close(out.costs, expected.costs, rtol=0, atol=0)
    torch.testing.assert_close(total, expected.costs.sum(), rtol=0, atol=0)
    torch.testing.assert_close(out.grads, expected.grads, rtol=0, atol=0)


@pytest.mark.cuda
@gpu_only
def test_cuda_through_the_loss_api() -> None:
    from speechkit.losses import rnnt_loss, tdt_loss

    logits, targets, tl, ll = _case(3, 20, 6, 33, [20, 15, 9], [5, 3, 2], range(32), seed=24)
    for fn, extra in ((rnnt_loss, {}), (tdt_loss, {"durations": [0, 1, 2]})):
        joint = logits if fn is rnnt_loss else torch.cat([logits, logits[..., :3]], dim=-1)  # + 3 duration logits
        x = joint.detach().clone().requires_grad_(True)
        losses = {}
        for backend in ("numba_cuda", "torch"):
            x.grad = None
            loss = fn(x, targets.clamp(min=0), tl, ll, backend=backend, reduction="mean", **extra)
            loss.backward()
            losses[backend] = (loss.detach(), x.grad.clone())
        torch.testing.assert_close(losses["numba_cuda"][0], losses["torch"][0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(losses["numba_cuda"][1], losses["torch"][1], rtol=0, atol=1e-5)
