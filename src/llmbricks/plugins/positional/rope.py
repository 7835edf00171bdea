"""Rotary position embeddings (Su et al. 2021, "RoFormer").

RoPE rotates each query and key by an angle proportional to its position, pair of dimensions by
pair of dimensions, so the score ``q_m . k_n`` depends only on the content and on ``m - n``:
relative position without any bias table. Nothing is learned.

Layout: "rotate half" (GPT-NeoX, Llama, Hugging Face), not RoFormer's interleaved pairs.
Dimension ``j`` of the rotated part is paired with dimension ``j + r/2`` (``r`` = rotated size);
the pair ``(x_j, x_{j+r/2})`` turns by ``p * w_j``. Both layouts are the same maths up to a fixed
permutation of the head dimensions, but weights trained with one do not load into the other.

Partial rotary (GPT-NeoX, Phi): only the first ``r = int(head_dim * rotary_fraction)`` dims of each
head (rounded down to an even number) are rotated; the rest pass through and carry content only.

Frequency scaling, for checkpoints trained to reach past their original context:

- ``linear`` (position interpolation, Chen et al. 2023): every ``w_j`` divided by ``factor``;
- ``llama3`` (Llama 3.1/3.2): with wavelength ``L_j = 2 pi / w_j`` and the original context
  ``C``, low frequencies (``L_j > C / low_freq_factor``) are divided by ``factor``, high ones
  (``L_j < C / high_freq_factor``) are kept, and those between are blended:
  ``s = (C / L_j - low) / (high - low)``, ``w_j' = (1 - s) w_j / factor + s w_j``.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor

from llmbricks.core.component import Dims, ParamsModel
from llmbricks.core.interfaces import PositionalEncoding, PositionContext


def rotary_dim(head_dim: int, fraction: float) -> int:
    """How many dims of each head are rotated: ``int(head_dim * fraction)`` rounded down to even."""
    size = int(head_dim * fraction)
    return size - size % 2


def rotate_half(x: Tensor) -> Tensor:
    """``[x1, x2] -> [-x2, x1]`` on the last dim: a 90-degree turn of every ``(x1_j, x2_j)`` pair."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class RotaryPositional(PositionalEncoding):
    """Rotary position embeddings (RoPE, Su et al.): rotate q and k by position; no weights."""

    name = "rope"
    per_row_positions = True
    #: Angles exist for every position, so sequences past the context length run; quality there
    #: degrades unless the model was trained for it (the linear and llama3 scalings below; NTK
    #: and YaRN are not implemented).
    extrapolates: ClassVar[bool] = True

    class Params(ParamsModel):
        theta: float = Field(10000.0, gt=1.0, description="frequency base: pair j turns at "
                             "theta^(-2j/r) radians per position (10000 in RoFormer, 500000 in Llama 3)")
        rotary_fraction: float = Field(1.0, gt=0.0, le=1.0, description="fraction of each head's "
                                       "dims that are rotated (GPT-NeoX 0.25, Phi 0.4...); the rest "
                                       "pass through")
        scaling: Literal["none", "linear", "llama3"] = Field(
            "none", description="frequency scaling: linear divides every frequency by "
            "scaling_factor; llama3 divides the low ones and blends the middle (Llama 3.1/3.2)")
        scaling_factor: float = Field(1.0, ge=1.0, le=1e6, description="how far the context was "
                                      "stretched (linear, llama3)")
        low_freq_factor: float = Field(1.0, gt=0.0, le=1e6, description="llama3: wavelengths above "
                                       "original_context / low_freq_factor are divided by the factor")
        high_freq_factor: float = Field(4.0, gt=0.0, le=1e6, description="llama3: wavelengths below "
                                        "original_context / high_freq_factor are kept")
        original_context: int = Field(8192, ge=1, le=1 << 24, description="llama3: the context the "
                                      "model was pretrained with")

    @classmethod
    def check(cls, params: Params, dims: Dims) -> None:
        """Reject head sizes that leave nothing to rotate or an odd dim that cannot be paired."""
        size = rotary_dim(dims.head_dim, params.rotary_fraction)
        if size == 0:
            raise ValueError(
                f"rope rotates int({dims.head_dim} * {params.rotary_fraction}) rounded down to even "
                f"= 0 dims of each head; raise rotary_fraction or the head size (emb_dim / n_heads)")
        if params.scaling == "llama3" and params.high_freq_factor <= params.low_freq_factor:
            raise ValueError(f"llama3 scaling needs high_freq_factor ({params.high_freq_factor}) > "
                             f"low_freq_factor ({params.low_freq_factor})")
        if params.rotary_fraction == 1.0 and dims.head_dim % 2:
            raise ValueError(
                f"rope pairs dimensions, but head_dim = emb_dim / n_heads = {dims.head_dim} is odd; "
                "use an even head size or a rotary_fraction below 1")

    def __init__(self, params: Params, dims: Dims) -> None:
        super().__init__(params, dims)
        self.rotary_dim = rotary_dim(dims.head_dim, params.rotary_fraction)

    def positions_limit(self) -> None:
        """``None``: rotation angles are defined for every position."""
        return None

    def rotation(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """``(cos, sin)``, each ``[T, r]`` float32, for the new tokens; computed once per pass.

        Computed from the positions rather than kept in a buffer, so the module has no state and
        a model cast to bf16 keeps exact frequencies.
        Positions ``[B, T]`` (each row at its own) give ``[B, 1, T, r]``: one table per row,
        broadcast over the heads.
        """
        angles = self.rotation_angles(positions)                    # [T, r/2]: p * w_j
        angles = torch.cat((angles, angles), dim=-1)                # [T, r]: both halves of a pair
        if angles.dim() == 3:
            angles = angles.unsqueeze(1)                            # [B, 1, T, r]: every head
        return angles.cos(), angles.sin()

    def rotation_angles(self, positions: Tensor) -> Tensor:
        """``p * w_j`` ``[T, r/2]`` float32 (``[B, T, r/2]`` for ``[B, T]`` positions): the angle
        the pair ``(x_j, x_{j+r/2})`` turns by at position ``p``."""
        return positions.to(torch.float32)[..., None] * self.frequencies(positions.device)

    def frequencies(self, device: torch.device | None = None) -> Tensor:
        """``w_j`` for ``j = 0 .. r/2 - 1``, float32, after the configured scaling."""
        p, r = self.params, self.rotary_dim
        # w_j = theta^(-2j / r)
        inv_freq = p.theta ** (-torch.arange(0, r, 2, device=device, dtype=torch.float32) / r)
        if p.scaling == "linear":
            return inv_freq / p.scaling_factor
        if p.scaling == "llama3":
            wavelength = 2 * math.pi / inv_freq
            low_wave = p.original_context / p.low_freq_factor    # longer: divided by the factor
            high_wave = p.original_context / p.high_freq_factor  # shorter: kept
            blend = ((p.original_context / wavelength - p.low_freq_factor)
                     / (p.high_freq_factor - p.low_freq_factor))
            scaled = torch.where(wavelength > low_wave, inv_freq / p.scaling_factor, inv_freq)
            mixed = (1 - blend) * scaled / p.scaling_factor + blend * scaled
            middle = (wavelength >= high_wave) & (wavelength <= low_wave)
            return torch.where(middle, mixed, scaled)
        return inv_freq

    def rotate(self, q: Tensor, k: Tensor, pos: PositionContext) -> tuple[Tensor, Tensor]:
        """Rotate queries ``[B, H, T, hd]`` and keys ``[B, H_kv, T, hd]`` (head counts may differ)."""
        cos, sin = pos.rotation
        half = self.rotary_dim // 2
        # rotate_half(x) * sin == roll(x, r/2) * [-sin_1, sin_2]: one roll instead of neg + cat.
        signed_sin = torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)
        r = self.rotary_dim
        if r == q.shape[-1]:
            return _Rotate.apply(q, k, cos.to(q.dtype), signed_sin.to(q.dtype))
        q_rot, k_rot = _Rotate.apply(q[..., :r], k[..., :r], cos.to(q.dtype), signed_sin.to(q.dtype))
        return torch.cat((q_rot, q[..., r:]), dim=-1), torch.cat((k_rot, k[..., r:]), dim=-1)


def _turn(x: Tensor, cos: Tensor, signed_sin: Tensor) -> Tensor:
    """``x * cos + rotate_half(x) * sin``: each ``(x1_j, x2_j)`` pair turned by its angle."""
    return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, dims=-1), signed_sin)


class _Rotate(torch.autograd.Function):
    """RoPE on q and k as one autograd node.

    A rotation is orthogonal, so its gradient is the inverse rotation of the incoming gradient:
    ``dL/dx = R(-angle) dL/dy``, i.e. the same three operations with the sine negated. Nothing but
    cos and sin is saved for backward.
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, cos: Tensor, signed_sin: Tensor) -> tuple[Tensor, Tensor]:
        ctx.save_for_backward(cos, signed_sin)
        return _turn(q, cos, signed_sin), _turn(k, cos, signed_sin)

    @staticmethod
    def backward(ctx, grad_q: Tensor, grad_k: Tensor) -> tuple[Tensor | None, ...]:
        cos, signed_sin = ctx.saved_tensors
        back = -signed_sin
        return (None if grad_q is None else _turn(grad_q, cos, back),
                None if grad_k is None else _turn(grad_k, cos, back), None, None)
