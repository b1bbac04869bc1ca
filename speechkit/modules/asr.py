"""A FastConformer transducer ASR model (RNN-T, TDT or multi-blank, optionally hybrid with CTC) composed of parts.

:class:`TransducerASR` is icefall's ``AsrModel(encoder_embed, encoder, decoder, joiner)`` shape: the parts are built
outside (:meth:`TransducerASR.from_config` maps an :class:`ASRModelConfig` to them) and passed in::

    audio (B, N) --frontend--> feats (B, F, T) --spec_augment (training only)--> --encoder--> enc (B, T', D)
    tokens (B, U) --prediction--> g (B, U+1, H)
    joint(enc, g) -> logits (B, T', U+1, K)          K = layout.num_outputs (tokens, blank(s), TDT durations)
    ctc(enc) -> log-probs (B, T', V+1)               hybrid models only

:meth:`TransducerASR.forward` returns the training loss (:class:`ASRLoss`); :meth:`TransducerASR.decode` runs batched
greedy decoding. An exported model file (:mod:`speechkit.modules.export`) rebuilds the model without Lightning:
:meth:`TransducerASR.from_model_file`.

Dimension legend: B batch, N audio samples, F mel bins, T feature frames, T' encoder frames (T / 8), D encoder width,
U target tokens, H prediction-network width, V vocabulary size (the tokenizer's; the blank is extra), K joint outputs.

Example:
    >>> import torch
    >>> from speechkit.modules.fastconformer import FastConformerConfig
    >>> cfg = ASRModelConfig(encoder=FastConformerConfig.preset("tiny"), vocab_size=32, pred_hidden=64,
    ...                      joint_hidden=64)
    >>> model = TransducerASR.from_config(cfg)
    >>> audio, audio_lens = torch.randn(2, 16000), torch.tensor([16000, 12000])
    >>> out = model(audio, audio_lens, torch.randint(0, 32, (2, 5)), torch.tensor([5, 3]))
    >>> out.loss.backward()
    >>> hyps = model.decode(audio, audio_lens)
    >>> len(hyps)
    2
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechkit.audio.augment import FrequencyWarp, SpecAugment
from speechkit.audio.features import FeatureConfig, MelFrontend
from speechkit.decoding.cuda_graphs import GraphedGreedyDecoder
from speechkit.decoding.greedy import GreedyOptions, ctc_greedy_decode, greedy_transducer_decode
from speechkit.decoding.hypotheses import Hypothesis
from speechkit.losses.layout import JointLayout, LayoutError
from speechkit.modules.ctc import CTCHead
from speechkit.modules.fastconformer import FastConformerConfig, FastConformerEncoder
from speechkit.modules.transducer import Joint, PredictionNetwork

if TYPE_CHECKING:  # pragma: no cover
    from speechkit.text.tokenizer import Tokenizer

__all__ = [
    "MODEL_TYPES",
    "ASRConfigError",
    "ASRLoss",
    "ASRModelConfig",
    "SpecAugmentConfig",
    "TransducerASR",
    "TransducerLossConfig",
    "native_bfloat16",
]

MODEL_TYPES = ("rnnt", "tdt", "multiblank")
ModelType = Literal["rnnt", "tdt", "multiblank"]
_REDUCTIONS = ("mean_volume", "mean", "sum")
_JOINT_DTYPES = ("float32", "bfloat16", "auto")


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices natively: a CUDA GPU that supports bfloat16, or a CPU with
    AVX512-BF16 or AMX-BF16 (Linux, from /proc/cpuinfo). Elsewhere bfloat16 is emulated and slower than float32."""
    if device.type == "cuda":
        # Ampere and later; older GPUs only emulate it (PyTorch's default answer counts emulation).
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return device.type == "cpu" and _cpu_has_bfloat16()


@functools.cache
def _cpu_has_bfloat16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


class ASRConfigError(ValueError):
    """An :class:`ASRModelConfig` field has a value the model cannot use; the message names the field."""


@dataclass
class SpecAugmentConfig:
    """SpecAugment applied to the features in training (FastConformer's settings by default).

    Attributes:
        freq_masks: frequency masks per utterance (0 = none).
        freq_width: widest frequency mask, in mel bins.
        time_masks: time masks per utterance (0 = none).
        time_width: widest time mask as a fraction of each utterance's valid length (0.05 = 5 %).
        freq_warp: VTLP-style frequency warping before the masks: each utterance's formants move by a factor
            uniform in ``[1 - freq_warp, 1 + freq_warp]`` (0 = off; :class:`~speechkit.audio.augment.FrequencyWarp`).
    """

    freq_masks: int = 2
    freq_width: int = 27
    time_masks: int = 10
    time_width: float = 0.05
    freq_warp: float = 0.0

    def validate(self) -> None:
        """Check ``freq_warp`` (SpecAugment checks its own arguments and names them).

        Raises:
            ASRConfigError: ``freq_warp`` outside ``[0, 0.5)``.
        """
        if not 0.0 <= self.freq_warp < 0.5:
            raise ASRConfigError(f"spec_augment.freq_warp={self.freq_warp!r}: must be in [0, 0.5) (0 = off)")

    def build(self, features: FeatureConfig) -> tuple[FrequencyWarp | None, SpecAugment | None]:
        """The training-time feature augmenters this config enables, for features made with ``features``.

        Returns:
            ``(freq_warp, spec_augment)``, each ``None`` when off; apply them in that order.

        Raises:
            ASRConfigError: ``freq_warp`` outside ``[0, 0.5)``.
            AugmentError: a bad SpecAugment value.
        """
        self.validate()
        warp = None
        if self.freq_warp > 0:
            warp = FrequencyWarp(features.sample_rate, features.n_mels, features.lowfreq, features.highfreq,
                                 self.freq_warp)
        masks = None
        if self.freq_masks > 0 or self.time_masks > 0:
            masks = SpecAugment(self.freq_masks, self.freq_width, self.time_masks, float(self.time_width))
        return warp, masks


@dataclass
class TransducerLossConfig:
    """How :meth:`TransducerASR.forward` computes the training loss.

    Attributes:
        sigma: TDT and multi-blank logit under-normalisation (NeMo: 0.02 in the FastConformer TDT config, 0.05 in the
            multi-blank one); ignored by RNN-T.
        omega: TDT only: probability that a training step uses the plain RNN-T loss on the token logits (one draw per
            step, not per sub-batch).
        fastemit_lambda: FastEmit regularisation (0 = off).
        clamp: clip each sample's logit gradient to ``[-clamp, clamp]`` (<= 0 = off).
        reduction: ``"mean_volume"`` (sum of costs / sum of target lengths: NeMo's FastConformer setting),
            ``"mean"`` (over utterances) or ``"sum"``.
        fused_batch_size: compute the joint and the loss in sub-batches of this many utterances, each narrowed to
            its own longest T' and U (NeMo's ``fused_batch_size``); 0 = the whole batch at once.
        fused_recompute: with sub-batches, keep no joint activations between forward and backward: each sub-batch's
            joint + loss is recomputed in the backward pass (activation checkpointing), so memory holds one
            sub-batch's ``(b, T', U+1, joint_hidden)`` tensors at a time, at the price of a second joint forward.
        backend: loss implementation (``"auto"``: Numba on CPU, Numba CUDA on GPU; ``"torch"``: the reference).
        joint_dtype: precision of the training joint: ``"float32"``; ``"bfloat16"`` (its ``(b, T', U+1, hidden)``
            activation and output projection in bfloat16; the loss still gets float32 logits); ``"auto"``:
            bfloat16 where the device has native bfloat16 arithmetic (:func:`native_bfloat16`), else float32. Why:
            the joint is the largest tensor of a step; on a CPU with AVX512-BF16 its output projection runs about
            3x faster in bfloat16 and the recipe's training step about 10 % faster. Decoding is unaffected.
    """

    sigma: float = 0.02
    omega: float = 0.1
    fastemit_lambda: float = 0.0
    clamp: float = -1.0
    reduction: str = "mean_volume"
    fused_batch_size: int = 0
    fused_recompute: bool = True
    backend: str = "auto"
    joint_dtype: str = "float32"


@dataclass
class ASRModelConfig:
    """Everything needed to build a :class:`TransducerASR` (saved as YAML inside an exported model file).

    Attributes:
        features: the log-mel front end.
        encoder: the FastConformer encoder (``encoder.feat_in`` must equal ``features.n_mels``).
        model_type: ``"rnnt"``, ``"tdt"`` or ``"multiblank"``: the joint's output layout and the loss.
        durations: TDT frame advances (sorted, containing 1).
        big_blank_durations: multi-blank big-blank durations (each > 1).
        vocab_size: V, the tokenizer's number of pieces; 0 means "not known yet" (recipes fill it in from the
            tokenizer; building a model needs it).
        pred_hidden: prediction-network width H (embedding and LSTM).
        pred_layers: LSTM layers of the prediction network.
        joint_hidden: joint width.
        joint_activation: ``"relu"``, ``"tanh"`` or ``"sigmoid"``.
        pred_dropout: prediction-network dropout.
        joint_dropout: joint dropout.
        ctc_weight: > 0 adds a CTC head on the encoder: loss = (1 - w) * transducer + w * CTC (hybrid model).
        spec_augment: SpecAugment settings (training only).
        loss: training-loss settings (not needed for inference, kept so the YAML tells how a model was trained).
    """

    features: FeatureConfig = field(default_factory=FeatureConfig)
    encoder: FastConformerConfig = field(default_factory=FastConformerConfig)
    model_type: str = "tdt"
    durations: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    big_blank_durations: list[int] = field(default_factory=lambda: [2, 4, 8])
    vocab_size: int = 0
    pred_hidden: int = 640
    pred_layers: int = 1
    joint_hidden: int = 640
    joint_activation: str = "relu"
    pred_dropout: float = 0.2
    joint_dropout: float = 0.2
    ctc_weight: float = 0.0
    spec_augment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    loss: TransducerLossConfig = field(default_factory=TransducerLossConfig)

    def layout(self) -> JointLayout:
        """The joint output layout this configuration gives.

        Raises:
            ASRConfigError: unknown model type, ``vocab_size`` not set, or bad durations.
        """
        if self.model_type not in MODEL_TYPES:
            raise ASRConfigError(f"ASRModelConfig.model_type={self.model_type!r}: choose one of {', '.join(MODEL_TYPES)}")
        if not isinstance(self.vocab_size, int) or self.vocab_size < 1:
            raise ASRConfigError(f"ASRModelConfig.vocab_size={self.vocab_size!r}: must be >= 1 (the tokenizer's "
                                 "vocab_size; recipes set it from the tokenizer)")
        try:
            if self.model_type == "tdt":
                return JointLayout.tdt(self.vocab_size, [int(d) for d in self.durations])
            if self.model_type == "multiblank":
                return JointLayout.multiblank(self.vocab_size, [int(d) for d in self.big_blank_durations])
            return JointLayout.rnnt(self.vocab_size)
        except LayoutError as err:
            name = "durations" if self.model_type == "tdt" else "big_blank_durations"
            raise ASRConfigError(f"ASRModelConfig.{name}: {err}") from None

    def validate(self) -> None:
        """Check the fields that the parts do not check themselves.

        Raises:
            ASRConfigError: the first bad field, by name.
        """
        self.layout()
        self.features.validate()
        self.encoder.validate()
        if self.encoder.feat_in != self.features.n_mels:
            raise ASRConfigError(f"ASRModelConfig.encoder.feat_in={self.encoder.feat_in} must equal "
                                 f"features.n_mels={self.features.n_mels}")
        for name in ("pred_hidden", "pred_layers", "joint_hidden"):
            if getattr(self, name) < 1:
                raise ASRConfigError(f"ASRModelConfig.{name}={getattr(self, name)!r}: must be >= 1")
        for name in ("pred_dropout", "joint_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ASRConfigError(f"ASRModelConfig.{name}={getattr(self, name)!r}: must be in [0, 1)")
        if not 0.0 <= self.ctc_weight < 1.0:
            raise ASRConfigError(f"ASRModelConfig.ctc_weight={self.ctc_weight!r}: must be in [0, 1) "
                                 "(0 = no CTC head)")
        if self.loss.reduction not in _REDUCTIONS:
            raise ASRConfigError(f"ASRModelConfig.loss.reduction={self.loss.reduction!r}: choose one of "
                                 f"{', '.join(_REDUCTIONS)}")
        if self.loss.joint_dtype not in _JOINT_DTYPES:
            raise ASRConfigError(f"ASRModelConfig.loss.joint_dtype={self.loss.joint_dtype!r}: choose one of "
                                 f"{', '.join(_JOINT_DTYPES)}")
        if self.loss.fused_batch_size < 0:
            raise ASRConfigError(f"ASRModelConfig.loss.fused_batch_size={self.loss.fused_batch_size}: must be >= 0")
        if not 0.0 <= self.loss.omega <= 1.0:
            raise ASRConfigError(f"ASRModelConfig.loss.omega={self.loss.omega}: must be in [0, 1]")
        self.spec_augment.validate()


@dataclass
class ASRLoss:
    """What :meth:`TransducerASR.forward` returns.

    Attributes:
        loss: the total loss to back-propagate (scalar).
        transducer_loss: the transducer part, reduced as configured (scalar, detached).
        ctc_loss: the CTC part, reduced like the transducer part (scalar, detached), ``None`` without a CTC head.
        num_tokens: target tokens in the batch.
        used_rnnt: TDT only: this step drew the plain RNN-T loss (``omega``).
    """

    loss: Tensor
    transducer_loss: Tensor
    ctc_loss: Tensor | None
    num_tokens: int
    used_rnnt: bool = False


class TransducerASR(nn.Module):
    """Front end + SpecAugment + FastConformer encoder + prediction network + joint (+ CTC head).

    Args:
        frontend: waveform -> log-mel features.
        encoder: features -> encoder frames.
        prediction: the prediction network (``prediction.vocab_size`` = V).
        joint: the joint; ``joint.layout`` decides the model type (RNN-T, TDT, multi-blank).
        spec_augment: masks features in training mode (``None`` = no masking).
        ctc: optional CTC head over the encoder output (hybrid model).
        ctc_weight: weight of the CTC loss (needs ``ctc``).
        loss_config: how :meth:`forward` computes the loss.
        freq_warp: warps the features' frequency axis in training mode, before ``spec_augment`` (``None`` = off).

    Attributes:
        config: the :class:`ASRModelConfig` it was built from (``None`` when built from parts).
    """

    def __init__(
        self,
        frontend: MelFrontend,
        encoder: FastConformerEncoder,
        prediction: PredictionNetwork,
        joint: Joint,
        spec_augment: SpecAugment | None = None,
        ctc: CTCHead | None = None,
        ctc_weight: float = 0.0,
        loss_config: TransducerLossConfig | None = None,
        freq_warp: FrequencyWarp | None = None,
    ) -> None:
        super().__init__()
        if prediction.vocab_size != joint.layout.vocab_size:
            raise ValueError(f"prediction network vocab_size {prediction.vocab_size} != joint layout vocab_size "
                             f"{joint.layout.vocab_size}")
        if ctc_weight > 0 and ctc is None:
            raise ValueError(f"ctc_weight={ctc_weight} needs a CTC head")
        self.frontend = frontend
        self.spec_augment = spec_augment
        self.freq_warp = freq_warp
        self.encoder = encoder
        self.prediction = prediction
        self.joint = joint
        self.ctc = ctc
        self.ctc_weight = float(ctc_weight)
        self.loss_config = loss_config or TransducerLossConfig()
        self.config: ASRModelConfig | None = None

    def __getstate__(self) -> dict:
        """Pickling and ``copy.deepcopy`` leave out the captured CUDA-graph decoder (graphs do not copy)."""
        state = self.__dict__.copy()
        state.pop("_graphed_decoder", None)
        return state

    # -- construction ---------------------------------------------------------------------------------------------

    @classmethod
    def from_config(cls, cfg: ASRModelConfig) -> TransducerASR:
        """Build every part from a config (the config -> object mapping, in one place).

        Raises:
            ASRConfigError: a bad field (``vocab_size`` unset, ``encoder.feat_in != features.n_mels``, ...).
        """
        cfg.validate()
        layout = cfg.layout()
        freq_warp, spec_augment = cfg.spec_augment.build(cfg.features)
        encoder = FastConformerEncoder(cfg.encoder)
        prediction = PredictionNetwork(cfg.vocab_size, cfg.pred_hidden, cfg.pred_layers, cfg.pred_dropout)
        joint = Joint(encoder.d_model, cfg.pred_hidden, cfg.joint_hidden, layout=layout,
                      activation=cfg.joint_activation, dropout=cfg.joint_dropout)  # type: ignore[arg-type]
        ctc = CTCHead(encoder.d_model, cfg.vocab_size) if cfg.ctc_weight > 0 else None
        model = cls(MelFrontend(cfg.features), encoder, prediction, joint, spec_augment, ctc, cfg.ctc_weight, cfg.loss,
                    freq_warp)
        model.config = cfg
        return model

    @classmethod
    def from_model_file(
        cls, path: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> tuple[TransducerASR, Tokenizer, ASRModelConfig]:
        """Load an exported model file (:func:`speechkit.modules.export.save_model_file`), without Lightning.

        Args:
            path: the ``.safetensors`` model file.
            device: where to put the model.
            dtype: floating-point type of the weights (float32 by default, whatever the file stores).

        Returns:
            ``(model, tokenizer, cfg)``; the model is in eval mode.

        Raises:
            ModelFileError: not a speechkit model file, not an ASR model, a newer format, or weights that do not fit
                the embedded config.
            ConfigError: the embedded config has an unknown key or a bad value.

        Example:
            >>> model, tokenizer, cfg = TransducerASR.from_model_file("exp/tdt/model.safetensors")  # doctest: +SKIP
            >>> tokenizer.decode(model.decode(audio, audio_lens)[0].tokens)  # doctest: +SKIP
        """
        from omegaconf import OmegaConf

        from speechkit.config import load_config
        from speechkit.modules.export import ModelFileError, read_model_file

        mf = read_model_file(path, expected_kind="asr")
        values = OmegaConf.to_container(OmegaConf.create(mf.config_yaml))
        if not isinstance(values, dict):
            raise ModelFileError(f"{path}: the embedded config is not a mapping")
        cfg = load_config(ASRModelConfig, values=values, values_source=f"{path} (embedded config)")
        if cfg.vocab_size != mf.tokenizer.vocab_size:
            raise ModelFileError(f"{path}: config vocab_size {cfg.vocab_size} != embedded tokenizer's "
                                 f"{mf.tokenizer.vocab_size}")
        model = cls.from_config(cfg)
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in mf.state_dict.items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ModelFileError(f"{path}: weights do not fit the embedded config: missing {sorted(missing)[:5]}, "
                                 f"unexpected {sorted(unexpected)[:5]}")
        return model.to(device=device, dtype=dtype).eval(), mf.tokenizer, cfg

    # -- properties -----------------------------------------------------------------------------------------------

    @property
    def layout(self) -> JointLayout:
        """The joint's output layout (kind, vocab size, blank index, durations)."""
        return self.joint.layout

    @property
    def vocab_size(self) -> int:
        """V: the number of real tokens."""
        return self.layout.vocab_size

    @property
    def frame_seconds(self) -> float:
        """Seconds per encoder frame (feature hop x subsampling factor: 0.08 for FastConformer)."""
        return self.frontend.cfg.window_stride * self.encoder.cfg.subsampling_factor

    @property
    def sample_rate(self) -> int:
        """Audio rate the front end expects."""
        return self.frontend.cfg.sample_rate

    # -- forward passes -------------------------------------------------------------------------------------------

    def features(self, audio: Tensor, audio_lens: Tensor) -> tuple[Tensor, Tensor]:
        """Log-mel features, frequency-warped and SpecAugment-masked in training mode.

        Args:
            audio: ``(B, N)`` float waveforms at :attr:`sample_rate`, zero padded.
            audio_lens: ``(B,)`` valid samples.

        Returns:
            ``(feats (B, F, T), feat_lens (B,))``.
        """
        feats, feat_lens = self.frontend(audio, audio_lens)
        if self.freq_warp is not None:
            feats = self.freq_warp(feats, feat_lens)
        if self.spec_augment is not None:
            feats = self.spec_augment(feats, feat_lens)
        return feats, feat_lens

    def encode(self, audio: Tensor, audio_lens: Tensor) -> tuple[Tensor, Tensor]:
        """Audio -> encoder frames.

        Args:
            audio: ``(B, N)`` waveforms; audio_lens: ``(B,)``.

        Returns:
            ``(enc (B, T', D), enc_lens (B,))``, enc zero beyond each length.
        """
        feats, feat_lens = self.features(audio, audio_lens)
        return self.encoder(feats, feat_lens)

    def joint_logits(self, enc: Tensor, targets: Tensor, target_lens: Tensor) -> Tensor:
        """The full joint over every (frame, label position) pair.

        Args:
            enc: ``(B, T', D)`` encoder output.
            targets: ``(B, U)`` token ids (any value past each length).
            target_lens: ``(B,)``.

        Returns:
            logits ``(B, T', U+1, K)`` with ``K = layout.num_outputs``.
        """
        return self.joint(enc, self.prediction(targets, target_lens))

    def forward(
        self,
        audio: Tensor,
        audio_lens: Tensor,
        targets: Tensor,
        target_lens: Tensor,
        generator: torch.Generator | None = None,
    ) -> ASRLoss:
        """Training loss: the transducer loss of :attr:`layout` (+ CTC for hybrid models).

        Args:
            audio: ``(B, N)``; audio_lens: ``(B,)``.
            targets: ``(B, U)`` token ids in ``[0, V)`` (padding: any value); target_lens: ``(B,)``.
            generator: CPU random source of the TDT ``omega`` draw (``None`` = torch's global generator).

        Returns:
            :class:`ASRLoss`.
        """
        enc, enc_lens = self.encode(audio, audio_lens)
        targets = targets.to(enc.device)
        target_lens = target_lens.to(enc.device)
        g = self.prediction(targets, target_lens)  # (B, U+1, H)
        cfg = self.loss_config
        use_rnnt = self.layout.kind == "tdt" and cfg.omega > 0 and bool(torch.rand((), generator=generator) < cfg.omega)
        total = self._transducer_cost_sum(enc, enc_lens, g, targets, target_lens, use_rnnt)
        # Both heads are reduced alike, so ctc_weight really is the share of the CTC term: a per-utterance CTC sum
        # next to a per-token transducer mean would give CTC ~25x the weight on the shared encoder.
        if cfg.reduction == "mean_volume":
            denom = target_lens.sum().clamp(min=1).to(total.dtype)
        elif cfg.reduction == "mean":
            denom = torch.tensor(float(max(enc.shape[0], 1)), dtype=total.dtype, device=total.device)
        else:
            denom = torch.ones((), dtype=total.dtype, device=total.device)
        transducer = total / denom
        loss, ctc_loss = transducer, None
        if self.ctc is not None and self.ctc_weight > 0:
            log_probs = self.ctc(enc)  # (B, T', V+1), float32
            ctc_loss = F.ctc_loss(log_probs.transpose(0, 1), targets, enc_lens, target_lens, blank=self.ctc.blank_id,
                                  reduction="sum", zero_infinity=True) / denom
            loss = (1.0 - self.ctc_weight) * transducer + self.ctc_weight * ctc_loss
            ctc_loss = ctc_loss.detach()
        return ASRLoss(loss, transducer.detach(), ctc_loss, int(target_lens.sum()), use_rnnt)

    def _transducer_cost_sum(self, enc: Tensor, enc_lens: Tensor, g: Tensor, targets: Tensor, target_lens: Tensor,
                             use_rnnt: bool) -> Tensor:
        """Sum of per-utterance transducer costs, computed in sub-batches narrowed to their own T' and U."""
        batch = enc.shape[0]
        step = self.loss_config.fused_batch_size or batch
        sub_batched = step < batch
        recompute = sub_batched and self.loss_config.fused_recompute and torch.is_grad_enabled()
        total = enc.new_zeros((), dtype=torch.float32)
        for start in range(0, batch, step):
            sl = slice(start, start + step)
            e_lens, t_lens = enc_lens[sl], target_lens[sl]
            max_t, max_u = int(e_lens.max()), int(t_lens.max())
            args = (enc[sl, :max_t], g[sl, : max_u + 1], targets[sl, :max_u], e_lens, t_lens)
            if recompute:
                from torch.utils.checkpoint import checkpoint

                # The dropout mask is replayed (RNG state preserved); the omega draw was made once, outside.
                cost = checkpoint(self._sub_batch_cost, *args, use_rnnt, use_reentrant=False)
            else:
                cost = self._sub_batch_cost(*args, use_rnnt)
            total = total + cost.float()
        return total

    def _joint_in_bfloat16(self, device: torch.device) -> bool:
        dtype = self.loss_config.joint_dtype
        return dtype == "bfloat16" or (dtype == "auto" and native_bfloat16(device))

    def _sub_batch_cost(self, enc: Tensor, g: Tensor, targets: Tensor, enc_lens: Tensor, target_lens: Tensor,
                        use_rnnt: bool) -> Tensor:
        """Summed transducer cost of one sub-batch: enc ``(b, t, D)``, g ``(b, u+1, H)``, targets ``(b, u)``."""
        from speechkit.losses import multiblank_rnnt_loss, rnnt_loss, tdt_loss

        cfg, layout = self.loss_config, self.layout
        if self._joint_in_bfloat16(enc.device):
            # Autocast, not a cast of the weights: the parameters and their gradients stay float32.
            with torch.autocast(device_type=enc.device.type, dtype=torch.bfloat16):
                logits = self.joint(enc, g)
            logits = logits.float()  # the losses normalise in float32
        else:
            logits = self.joint(enc, g)  # (b, t, u+1, K)
        common = {"reduction": "sum", "clamp": cfg.clamp, "fastemit_lambda": cfg.fastemit_lambda,
                  "backend": cfg.backend}
        if layout.kind == "tdt":
            return tdt_loss(logits, targets, enc_lens, target_lens, durations=layout.durations, sigma=cfg.sigma,
                            omega=1.0 if use_rnnt else 0.0, **common)
        if layout.kind == "multiblank":
            return multiblank_rnnt_loss(logits, targets, enc_lens, target_lens,
                                        big_blank_durations=layout.big_blank_durations, sigma=cfg.sigma, **common)
        return rnnt_loss(logits, targets, enc_lens, target_lens, **common)

    # -- decoding -------------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _eval_mode(self) -> Iterator[None]:
        # Dither, SpecAugment and dropout must be off while decoding, whatever mode the caller left the model in.
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self.train(was_training)

    def decode(self, audio: Tensor, audio_lens: Tensor, options: GreedyOptions | None = None) -> list[Hypothesis]:
        """Batched greedy transducer decoding (runs in eval mode and without gradients; the mode is restored).

        Args:
            audio: ``(B, N)`` waveforms at :attr:`sample_rate`; audio_lens: ``(B,)``.
            options: :class:`~speechkit.decoding.GreedyOptions` (defaults when ``None``).

        Returns:
            One :class:`~speechkit.decoding.Hypothesis` per utterance; ``tokenizer.decode(hyp.tokens)`` gives the
            text, ``hyp.frames`` x :attr:`frame_seconds` the emission times.
        """
        with self._eval_mode():
            enc, enc_lens = self.encode(audio, audio_lens)
            return self.decode_encoded(enc, enc_lens, options)

    def decode_encoded(self, enc: Tensor, enc_lens: Tensor, options: GreedyOptions | None = None) -> list[Hypothesis]:
        """Greedy transducer decoding of encoder output ``(B, T', D)`` with lengths ``(B,)`` (call in eval mode).

        With ``options.cuda_graphs`` on a CUDA device the captured decoder is kept and reused across calls
        (recaptured when the model moves or the options change; see :mod:`speechkit.decoding.cuda_graphs`).
        """
        if options is not None and options.cuda_graphs and enc.device.type == "cuda":
            dtype = next(self.joint.parameters()).dtype
            graphed = self.__dict__.get("_graphed_decoder")
            if graphed is None or not graphed.matches(options, enc.device, dtype):
                graphed = GraphedGreedyDecoder(self.prediction, self.joint, options)
                self.__dict__["_graphed_decoder"] = graphed  # a plain attribute: not a submodule, not saved
            return graphed(enc, enc_lens)
        return greedy_transducer_decode(enc, enc_lens, self.prediction, self.joint, options)

    def decode_ctc(self, audio: Tensor, audio_lens: Tensor) -> list[Hypothesis]:
        """Greedy CTC decoding with the hybrid model's CTC head.

        Raises:
            ValueError: the model has no CTC head.
        """
        if self.ctc is None:
            raise ValueError("this model has no CTC head (ctc_weight was 0)")
        with self._eval_mode():
            enc, enc_lens = self.encode(audio, audio_lens)
            return ctc_greedy_decode(self.ctc(enc), enc_lens, blank=self.ctc.blank_id)

    def num_parameters(self) -> int:
        """Trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
