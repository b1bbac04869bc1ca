"""Transducer prediction network and joint (RNN-T, TDT and multi-blank share both; the joint's layout differs).

- :class:`PredictionNetwork`: token embedding (the blank / start-of-sequence id ``V`` embeds to a zero vector) and
  an LSTM. Training runs whole label sequences (:meth:`PredictionNetwork.forward`); decoding runs one label per
  hypothesis at a time (:meth:`PredictionNetwork.step`) with an explicit :class:`PredictionState`.
- :class:`Joint`: ``out(dropout(act(enc(f) + pred(g))))``. The two input projections are linear, so decoders project
  the encoder output once and each prediction output once (:meth:`Joint.project_encoder`,
  :meth:`Joint.project_prediction`) and then only pay for :meth:`Joint.joint_after_projection`.

The output width and the meaning of each logit come from :class:`speechkit.losses.layout.JointLayout`.

Parameter names map one to one onto NeMo's ``RNNTDecoder`` / ``RNNTJoint`` (see :func:`prediction_network_from_nemo`
and :func:`joint_from_nemo`), so a later loader can read NeMo checkpoints.

Example:
    >>> import torch
    >>> from speechkit.losses.layout import JointLayout
    >>> layout = JointLayout.tdt(vocab_size=32, durations=(0, 1, 2, 3, 4))
    >>> pred = PredictionNetwork(32, hidden=64)
    >>> joint = Joint(encoder_dim=80, pred_dim=64, hidden=64, layout=layout)
    >>> g = pred(torch.randint(0, 32, (2, 5)), torch.tensor([5, 3]))        # (B, U+1, H)
    >>> joint(torch.randn(2, 7, 80), g).shape                              # (B, T, U+1, V+1+D)
    torch.Size([2, 7, 6, 38])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from speechkit.losses.layout import JointLayout
from speechkit.modules.dropout import Dropout, dropout

__all__ = [
    "Joint",
    "PredictionNetwork",
    "PredictionState",
    "joint_from_nemo",
    "prediction_network_from_nemo",
    "select_state",
]

Activation = Literal["relu", "tanh", "sigmoid"]
# Functions, not modules: decoders evaluate the joint once per decision, where an nn.Module call costs a few
# microseconds (the activations have no parameters, so state dicts are the same either way).
_ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}


class _OptimizerSteps:
    """How many optimizer steps this process has taken, any optimizer (part of the gate table's cache key).

    Fused optimizer kernels (``AdamW(fused=True)``, the recipes' optimizer) write parameters without bumping their
    version counters, so a table keyed on versions alone went stale during training: validation decoded with an
    out-of-date table. A global step hook sees every optimizer.
    """

    count = 0

    @classmethod
    def bump(cls, optimizer: object, args: object, kwargs: object) -> None:
        cls.count += 1


register_optimizer_step_post_hook(_OptimizerSteps.bump)


class PredictionState(NamedTuple):
    """LSTM state of the prediction network.

    Attributes:
        h: hidden state, ``(L, B, H)`` (L = LSTM layers).
        c: cell state, ``(L, B, H)``.
    """

    h: Tensor
    c: Tensor


def select_state(mask: Tensor, new: PredictionState, old: PredictionState) -> PredictionState:
    """Take ``new`` where ``mask`` is true and ``old`` elsewhere, per batch element (no host sync).

    Args:
        mask: ``(B,)`` bool.
        new, old: states with tensors ``(L, B, H)``.
    """
    m = mask.view(1, -1, 1)
    return PredictionState(torch.where(m, new.h, old.h), torch.where(m, new.c, old.c))


class PredictionNetwork(nn.Module):
    """Embedding + LSTM over the previously emitted labels (NeMo's ``RNNTDecoder`` with ``blank_as_pad``).

    Args:
        vocab_size: V, the number of real tokens. The embedding has ``V + 1`` rows; row ``V`` is the blank /
            start-of-sequence id and the padding index, so it stays a zero vector. (For multi-blank joints, whose
            blank is ``V + N``, the start id is still ``V``, as in NeMo.)
        hidden: embedding and LSTM width H (NeMo's ``pred_hidden``, 640 in the FastConformer configs).
        num_layers: LSTM layers (1; 2 for NeMo's XL/XXL).
        dropout: dropout between LSTM layers and on the output.
        forget_gate_bias: initial forget-gate bias of the input-to-hidden LSTM biases; the hidden-to-hidden
            forget-gate biases start at 0. NeMo's default (1.0) helps the LSTM keep context early in training.
    """

    def __init__(
        self,
        vocab_size: int,
        hidden: int = 640,
        num_layers: int = 1,
        dropout: float = 0.2,
        forget_gate_bias: float | None = 1.0,
    ) -> None:
        super().__init__()
        if vocab_size < 1 or hidden < 1 or num_layers < 1:
            raise ValueError(f"vocab_size, hidden and num_layers must be >= 1, got {vocab_size}, {hidden}, {num_layers}")
        self.vocab_size = vocab_size
        self.hidden = hidden
        self.num_layers = num_layers
        self.blank_id = vocab_size  # start-of-sequence and padding id
        self.embed = nn.Embedding(vocab_size + 1, hidden, padding_idx=vocab_size)
        self.lstm = nn.LSTM(hidden, hidden, num_layers=num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = Dropout(dropout)
        if forget_gate_bias is not None:
            with torch.no_grad():
                for name, p in self.lstm.named_parameters():
                    # PyTorch's gate order is (input, forget, cell, output): the forget gate is rows [H, 2H).
                    if name.startswith("bias_ih"):
                        p[hidden:2 * hidden].fill_(forget_gate_bias)
                    elif name.startswith("bias_hh"):
                        p[hidden:2 * hidden].zero_()

    def init_state(self, batch: int, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> PredictionState:
        """Zero LSTM state for ``batch`` hypotheses: tensors ``(L, B, H)``."""
        w = self.embed.weight
        shape = (self.num_layers, batch, self.hidden)
        z = torch.zeros(shape, device=device if device is not None else w.device, dtype=dtype or w.dtype)
        return PredictionState(z, z.clone())

    def forward(self, targets: Tensor, target_lengths: Tensor) -> Tensor:
        """Run the whole label sequences with the start id prepended (training).

        Args:
            targets: ``(B, U)`` token ids; entries at or past ``target_lengths`` are ignored (any value).
            target_lengths: ``(B,)``.

        Returns:
            g: ``(B, U+1, H)``; row ``u`` has seen the first ``u`` labels.

        Raises:
            ValueError: a valid target is not a token id in ``[0, V)``.
        """
        if targets.dim() != 2 or target_lengths.shape != targets.shape[:1]:
            raise ValueError(f"targets must be (B, U) and target_lengths (B,), got {tuple(targets.shape)} "
                             f"and {tuple(target_lengths.shape)}")
        batch, max_u = targets.shape
        valid = torch.arange(max_u, device=targets.device) < target_lengths.to(targets.device).unsqueeze(1)
        bad = valid & ((targets < 0) | (targets >= self.vocab_size))
        if bool(bad.any()):
            b, u = (int(i) for i in bad.nonzero()[0])
            raise ValueError(f"targets[{b}, {u}] = {int(targets[b, u])} is not a token id in [0, {self.vocab_size})")
        # Padding becomes the zero-embedding id so that any padding value (-1, blank, ...) is safe to embed.
        labels = torch.where(valid, targets, torch.full_like(targets, self.blank_id))
        sos = torch.full((batch, 1), self.blank_id, dtype=labels.dtype, device=labels.device)
        x = self.embed(torch.cat([sos, labels], dim=1))
        y, _ = self.lstm(x)
        return self.dropout(y)

    def step(self, labels: Tensor, state: PredictionState | None = None,
             input_gates: Tensor | None = None) -> tuple[Tensor, PredictionState]:
        """Advance every hypothesis by one label (decoding).

        Args:
            labels: ``(B,)`` ids in ``[0, V]``; ``V`` (blank / start) feeds a zero embedding.
            state: from :meth:`init_state` or a previous step; ``None`` means a zero state.
            input_gates: :meth:`input_gates`, fetched once by a decoder that steps many times (checking that the
                cached table is current costs about as much as a small matrix product). ``None``: look it up here,
                or, with gradients on, compute the input side differentiably.

        Returns:
            ``(g, state)``: g ``(B, H)`` and the new state ``(L, B, H)`` each.
        """
        if state is None:
            state = self.init_state(labels.shape[0], labels.device, self.embed.weight.dtype)
        h_new, c_new = [], []
        x = labels
        for layer in range(self.num_layers):
            w_hh = getattr(self.lstm, f"weight_hh_l{layer}")
            if layer == 0:
                # The input is one of V + 1 known ids, so its input-side product is a row of a table (both biases
                # folded in): per label this step then reads W_hh only, half the weights nn.LSTM's cell reads.
                base = input_gates[labels] if input_gates is not None else self._input_gates(labels)  # (B, 4H)
            else:
                x = dropout(x, self.lstm.dropout, self.training)
                base = F.linear(x, getattr(self.lstm, f"weight_ih_l{layer}"), getattr(self.lstm, f"bias_ih_l{layer}"))
                base = base + getattr(self.lstm, f"bias_hh_l{layer}")
            # One LSTM cell step written out: nn.LSTM's fused CPU kernel (oneDNN) re-prepares its weights on every
            # call and costs ~15x more than this for a single time step. PyTorch's gate order is (i, f, g, o).
            gates = torch.addmm(base, state.h[layer], w_hh.t())
            act = gates.sigmoid()  # one op for i, f and o (the g quarter is recomputed with tanh below)
            h4 = self.hidden
            c = act[:, h4:2 * h4] * state.c[layer] + act[:, :h4] * gates[:, 2 * h4:3 * h4].tanh()
            x = act[:, 3 * h4:] * c.tanh()
            h_new.append(x)
            c_new.append(c)
        if self.num_layers == 1:
            new_state = PredictionState(h_new[0].unsqueeze(0), c_new[0].unsqueeze(0))
        else:
            new_state = PredictionState(torch.stack(h_new), torch.stack(c_new))
        return dropout(x, self.dropout.p, self.training), new_state

    def input_gates(self) -> Tensor:
        """Layer 0's input-side gate pre-activations of every id: ``(V + 1, 4H)``.

        Row ``k`` is ``embed[k] @ W_ih^T + b_ih + b_hh``, what :meth:`step` adds to ``h @ W_hh^T`` for label ``k``.
        Computed without gradient and kept until one of the four tensors may have changed: the cache is keyed on
        their storage and in-place version counters (``load_state_dict``, ``.to()``, in-place edits) and on the
        process's optimizer step count (fused optimizers do not bump version counters).
        """
        tensors = (self.embed.weight, self.lstm.weight_ih_l0, self.lstm.bias_ih_l0, self.lstm.bias_hh_l0)
        # Inference tensors have no version counter; they cannot change outside inference mode.
        key = (_OptimizerSteps.count,) + tuple(
            (t.data_ptr(), t.dtype, t.device, -1 if t.is_inference() else t._version) for t in tensors)
        cached = self.__dict__.get("_input_gates_cache")
        if cached is None or cached[0] != key:
            with torch.no_grad():
                table = F.linear(self.embed.weight, self.lstm.weight_ih_l0, self.lstm.bias_ih_l0) + self.lstm.bias_hh_l0
            cached = (key, table)
            self.__dict__["_input_gates_cache"] = cached  # a plain attribute: not a buffer, never saved
        return cached[1]

    def __getstate__(self) -> dict:
        """Pickling and ``copy.deepcopy`` leave out the gate table: a copy rebuilds it from its own weights."""
        state = self.__dict__.copy()
        state.pop("_input_gates_cache", None)
        return state

    def _input_gates(self, labels: Tensor) -> Tensor:
        """:meth:`input_gates` rows of ``labels`` ``(B,) -> (B, 4H)``; differentiable when gradients are on."""
        if torch.is_grad_enabled() and self.embed.weight.requires_grad:
            return F.linear(self.embed(labels), self.lstm.weight_ih_l0, self.lstm.bias_ih_l0) + self.lstm.bias_hh_l0
        return self.input_gates()[labels]


class Joint(nn.Module):
    """The transducer joint: ``out(dropout(act(enc(f) + pred(g))))`` (NeMo's ``RNNTJoint``).

    Args:
        encoder_dim: D, width of the encoder output.
        pred_dim: H, width of the prediction network output.
        hidden: joint width (NeMo's ``joint_hidden``, 640).
        layout: the output layout; ``layout.num_outputs`` logits per (t, u), raw (losses and decoders normalise).
        activation: ``"relu"`` (NeMo's default), ``"tanh"`` or ``"sigmoid"``.
        dropout: applied after the activation.
    """

    def __init__(
        self,
        encoder_dim: int,
        pred_dim: int,
        hidden: int = 640,
        *,
        layout: JointLayout,
        activation: Activation = "relu",
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation={activation!r} is unknown; choose one of {', '.join(_ACTIVATIONS)}")
        self.layout = layout
        self.enc = nn.Linear(encoder_dim, hidden)
        self.pred = nn.Linear(pred_dim, hidden)
        self.activation_name = activation
        self.activation = _ACTIVATIONS[activation]
        self.dropout = Dropout(dropout)
        self.out = nn.Linear(hidden, layout.num_outputs)

    def extra_repr(self) -> str:
        return f"activation={self.activation_name}"

    def project_encoder(self, f: Tensor) -> Tensor:
        """``(..., D) -> (..., hidden)``; decoders call it once per utterance."""
        return self.enc(f)

    def project_prediction(self, g: Tensor) -> Tensor:
        """``(..., H) -> (..., hidden)``; decoders call it once per emitted label."""
        return F.linear(g, self.pred.weight, self.pred.bias)

    def joint_after_projection(self, fp: Tensor, gp: Tensor) -> Tensor:
        """Logits from projected inputs of any broadcastable shapes: ``(..., hidden), (..., hidden) -> (..., K)``."""
        # Functional calls: decoders run this once per decision, where module-call overhead is a large share.
        h = dropout(self.activation(fp + gp), self.dropout.p, self.training)
        return F.linear(h, self.out.weight, self.out.bias)

    def forward(self, f: Tensor, g: Tensor) -> Tensor:
        """Full joint for training.

        Args:
            f: encoder output ``(B, T, D)``.
            g: prediction network output ``(B, U+1, H)``.

        Returns:
            logits ``(B, T, U+1, K)`` with ``K = layout.num_outputs``.
        """
        return self.joint_after_projection(self.project_encoder(f).unsqueeze(2), self.project_prediction(g).unsqueeze(1))


# ---------------------------------------------------------------------------------------------------------------
# NeMo parameter names
# ---------------------------------------------------------------------------------------------------------------
# RNNTDecoder: prediction.embed.weight (V+1, H); prediction.dec_rnn.lstm.{weight,bias}_{ih,hh}_l{k}
#   (NeMo's LSTM is time-first, ours batch-first: the weights are the same).
# RNNTJoint:   enc.{weight,bias}; pred.{weight,bias}; joint_net.{N}.{weight,bias} where joint_net is
#   Sequential(activation, [Dropout], Linear): N = 2 with dropout > 0, 1 without.


def prediction_network_from_nemo(state_dict: Mapping[str, Tensor], prefix: str = "") -> dict[str, Tensor]:
    """Rename a NeMo ``RNNTDecoder`` state dict to :class:`PredictionNetwork` names.

    Args:
        state_dict: NeMo tensors; keys under ``prefix`` (e.g. ``"decoder."`` for a whole ASR model).
        prefix: the decoder's prefix in ``state_dict``.

    Returns:
        A state dict for :meth:`PredictionNetwork.load_state_dict`.
    """
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        if name == "prediction.embed.weight":
            out["embed.weight"] = value
        elif name.startswith("prediction.dec_rnn.lstm."):
            out["lstm." + name[len("prediction.dec_rnn.lstm."):]] = value
    return out


def joint_from_nemo(state_dict: Mapping[str, Tensor], prefix: str = "") -> dict[str, Tensor]:
    """Rename a NeMo ``RNNTJoint`` state dict to :class:`Joint` names (the last ``joint_net`` Linear is ``out``).

    Args:
        state_dict: NeMo tensors; keys under ``prefix`` (e.g. ``"joint."``).
        prefix: the joint's prefix in ``state_dict``.
    """
    out: dict[str, Tensor] = {}
    net = {}
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        if name.startswith(("enc.", "pred.")):
            out[name] = value
        elif name.startswith("joint_net."):
            index, param = name[len("joint_net."):].split(".", 1)
            net.setdefault(int(index), {})[param] = value
    if net:
        # Only the output Linear has parameters; its position depends on whether NeMo built a Dropout.
        for param, value in net[max(net)].items():
            out["out." + param] = value
    return out
