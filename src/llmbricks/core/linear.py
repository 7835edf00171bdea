"""``y = x W^T + b`` with a faster path for the few rows of a decode step on CPU.

``F.linear`` multiplies the rows by the weight as ``x @ W^T``: with 2 to 64 rows, CPU BLAS
picks kernels that read the weight poorly, and the step of a batch of streams is then bound by
that. The same product written ``(W @ x^T)^T`` streams the weight once with the rows as the
columns: measured on 2 cores for GPT-2's vocabulary projection (50257 x 768), 34 ms -> 11 ms at
2 rows and 40 ms -> 23 ms at 16 (``benchmarks/bench_serve.py`` shows what it buys a server).

One row is a matrix-vector product, which CPU BLAS runs on one thread: fine for a weight that
fits the caches, slow for a vocabulary projection streamed from memory. Such a weight (from
``BIG_WEIGHT`` elements) gets the row twice, as a two-column product that uses every thread:
GPT-2's 50257 x 768 took 12.4 ms as ``gemv`` and 5.8 ms so, and every decoded token pays it.

Only without autograd (generation, serving, evaluation): training keeps ``F.linear`` and its
exact numbers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Up to this many rows, ``(W @ x^T)^T`` beats ``x @ W^T`` on CPU (past it, both are compute-bound).
MAX_ROWS = 64
#: A weight this large is streamed from memory: one row goes as two (a threaded product).
BIG_WEIGHT = 1 << 18


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear(x, weight, bias)``; few rows without autograd on CPU go as ``(W x^T)^T``."""
    rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    if (not 0 < rows <= MAX_ROWS or x.device.type != "cpu" or torch.is_grad_enabled()
            or x.dtype != weight.dtype or (rows == 1 and weight.numel() < BIG_WEIGHT)):
        return F.linear(x, weight, bias)
    flat = x.reshape(rows, x.shape[-1])
    columns = torch.cat([flat, flat]) if rows == 1 else flat              # one row: twice
    out = (torch.addmm(bias[:, None], weight, columns.t()) if bias is not None
           else weight @ columns.t())                                     # [out, rows] = W x^T
    return out[:, :rows].t().contiguous().view(*x.shape[:-1], weight.shape[0])


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, same state dict) whose forward is ``linear`` above."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)
