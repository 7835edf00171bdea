"""How much memory a training run needs, estimated before anything is allocated.

The model is built on the meta device (shapes and dtypes, no storage), so even gpt2-xl costs
nothing to count. The estimate of a run's peak is the sum of:

- ``process``: what this Python process holds already (python, torch and llmbricks imported),
  read from ``/proc/self/status``, plus ``TRAINING_RUNTIME`` for what training loads on top;
  on a GPU it is not in the GPU's memory, so it is left out.
- ``weights``: every parameter and buffer at its dtype (a tied tensor once).
- ``gradients``: one tensor per trainable parameter (``train.trainable`` and adapters decide
  which train).
- ``optimizer``: the optimizer's state per trainable parameter (AdamW: two moments; SGD and
  Lion: one; its ``state_per_parameter``).
- ``activations``: what autograd keeps for the backward pass of one micro-batch
  (``train.batch_size`` windows of ``model.context_length`` tokens), per block from its shapes,
  plus the logits and the cross-entropy's copies of them. See ``block_activation_bytes``.
- ``token cache``: the tokenized corpus (memory-mapped, so its pages count once read), at most
  one token per byte of a ``text`` source's files; other sources are not counted.

``check_memory`` compares the total with what the machine has (``available_memory``) and refuses
a config that cannot fit, in one line; ``LLMBRICKS_SKIP_MEMORY_CHECK=1`` skips the check.
``benchmarks/memory_estimate.py`` compares the estimate with measured peaks (docs/training.md).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..build import build_model
from ..config import Config
from ..errors import ConfigError, LlmbricksError
from ..interfaces import Attention, FeedForward, Model, Norm
from ..registry import Registry, get_registry
from .distributed import pick_precision
from .trainable import apply_trainable

SKIP_ENV = "LLMBRICKS_SKIP_MEMORY_CHECK"
GIB = 1 << 30
#: The vocabulary assumed when it is only known after the tokenizer learns it (char with no
#: alphabet): a character vocabulary is a few hundred at most, and its share is small.
ASSUMED_VOCAB = 256
#: The trainer's default for ``train.trainable: auto`` (the trainers say the same when they
#: build their model); a trainer not listed trains everything.
TRAINER_DEFAULT_POLICY = {"classify": "last_block"}
#: Logits-sized fp32 tensors alive at once at the start of the backward pass: the
#: log-softmax kept for backward, its gradient and the logits' gradient. Calibrated against
#: measured peaks (benchmarks/memory_estimate.py).
LOGIT_COPIES = 3
#: What a training process loads beyond the imports, whatever the model: the kernels of the
#: first forward, backward and fused AdamW step, the thread pools, matplotlib for the loss plot.
#: Measured on CPU with benchmarks/memory_estimate.py (about 60-80 MiB).
TRAINING_RUNTIME = 64 << 20
PARTS = ("process", "weights", "gradients", "optimizer", "activations", "token_cache")


@dataclass(frozen=True)
class MemoryEstimate:
    """A training run's estimated peak memory, in bytes, by part; ``notes`` say what is assumed."""

    device: str
    process: int
    weights: int
    gradients: int
    optimizer: int
    activations: int
    token_cache: int
    notes: tuple[str, ...] = field(default=())

    def parts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in PARTS}

    @property
    def total(self) -> int:
        return sum(self.parts().values())

    def breakdown(self) -> str:
        """``process 0.3, weights 0.5, ...`` in GiB, the parts that are not zero."""
        return ", ".join(f"{name.replace('_', ' ')} {gib(size)}" for name, size in self.parts().items()
                         if size)

    def to_data(self) -> dict[str, Any]:
        return {"device": self.device, "total_bytes": self.total,
                "total_gib": round(self.total / GIB, 3),
                "parts_bytes": self.parts(), "notes": list(self.notes)}


def gib(size: float) -> str:
    """Bytes as GiB: two decimals below 10 GiB, one above."""
    value = size / GIB
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


# --- the estimate -----------------------------------------------------------------------------


def estimate_memory(config: Config, registry: Registry | None = None, *,
                    device: torch.device | str = "cpu", process_bytes: int | None = None,
                    vocab_size: int | None = None) -> MemoryEstimate:
    """Estimate the peak memory of training ``config`` on ``device``; allocates nothing.

    ``process_bytes`` defaults to this process's resident memory plus ``TRAINING_RUNTIME`` on
    the CPU (0 on a GPU);
    ``vocab_size`` replaces a vocabulary that is still ``auto`` (the tokenizer's, when known).
    """
    registry = registry or get_registry()
    device = torch.device(device)
    notes: list[str] = []
    model = _meta_model(config, registry, vocab_size, notes)
    weights = _tensor_bytes(list(model.parameters()) + list(model.buffers()))
    trainable = _tensor_bytes([p for p in model.parameters() if p.requires_grad])
    gradients = trainable * (2 if _world_size() > 1 else 1)  # DDP's buckets hold a second copy
    if process_bytes is None:
        process_bytes = current_rss() + TRAINING_RUNTIME if device.type == "cpu" else 0
    if config.train.compile:
        notes.append("torch.compile's own buffers are not counted")
    return MemoryEstimate(
        device=str(device), process=process_bytes, weights=weights, gradients=gradients,
        optimizer=int(_optimizer_state(config, registry) * trainable),
        activations=activation_bytes(model, config, device),
        token_cache=_token_cache_bytes(config, registry, model.dims.vocab_size, notes),
        notes=tuple(notes))


def _meta_model(config: Config, registry: Registry, vocab_size: int | None,
                notes: list[str]) -> Model:
    """The config's model on the meta device, with the trainer's trainable policy applied."""
    vocab = config.model.vocab_size
    if vocab == "auto":
        vocab = vocab_size if vocab_size is not None else ASSUMED_VOCAB
        if vocab_size is None:
            notes.append(f"vocabulary learned from data: {ASSUMED_VOCAB} tokens assumed")
    model = build_model(config.model.model_copy(update={"vocab_size": vocab}), registry,
                        device="meta")
    default = TRAINER_DEFAULT_POLICY.get(config.train.trainer.name, "all")
    apply_trainable(model, config.train.trainable, default)  # type: ignore[arg-type]
    return model


def _tensor_bytes(tensors: list[torch.Tensor]) -> int:
    """Bytes of ``tensors``, a tensor listed twice (tied) counted once."""
    seen: dict[int, int] = {}
    for tensor in tensors:
        seen[id(tensor)] = tensor.numel() * tensor.element_size()
    return sum(seen.values())


def _world_size() -> int:
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def activation_bytes(model: Model, config: Config, device: torch.device) -> int:
    """What autograd keeps for one micro-batch's backward pass, plus the logits' copies.

    Blocks that come before every trainable weight keep nothing (no gradient flows into them).
    """
    batch, tokens = config.train.batch_size, config.model.context_length
    element = 2 if pick_precision(config.train.precision, torch.device(device)) == "bf16" else 4
    layout = model.layout()
    dims = model.dims
    first = _first_trainable_block(model)
    total = 0
    for block in layout.blocks[first:]:
        total += block_activation_bytes(block, batch, tokens, dims.emb_dim, dims.n_heads,
                                        dims.dropout, element, _fused_attention(config, device))
    rows = batch * tokens
    if first == 0:  # the embedding's indices (int64) and its dropout mask
        total += rows * 8 + (rows * dims.emb_dim if dims.dropout > 0 else 0)
    head = layout.head
    if head.per_token:  # final norm (in, out), then the logits (fp32 for the loss)
        total += 2 * rows * dims.emb_dim * element + LOGIT_COPIES * rows * dims.vocab_size * 4
    else:  # a classifier: the pooled vectors and a handful of logits per sequence
        total += 2 * rows * dims.emb_dim * element
    if element == 2:  # autocast keeps bf16 copies of the weights it casts
        total += _tensor_bytes([p for p in model.parameters() if p.dim() >= 2]) // 2
    return total


def block_activation_bytes(block: nn.Module, batch: int, tokens: int, emb_dim: int, heads: int,
                           dropout: float, element: int, fused: bool) -> int:
    """One block's saved tensors, per token, times ``batch * tokens`` (the GPT block's maths).

    Per token, in elements of ``emb_dim``: each norm keeps its input and its output (the next
    linear's input): 2 per norm; the attention keeps q, k and v (their projections' widths), its
    output and the output laid out for the output projection: width + 2; the feed-forward keeps
    each hidden tensor twice (before and after its activation): 2 x hidden widths. A dropout
    keeps a one-byte mask per element. Reference attention (and fused attention that falls back
    to the maths, as on CPU with dropout or a score bias) also keeps the softmax weights,
    ``heads x tokens`` per token, and with dropout their mask and the dropped weights.
    """
    norms = sum(1 for m in block.modules() if isinstance(m, Norm))
    attention = next((m for m in block.modules() if isinstance(m, Attention)), None)
    feedforward = next((m for m in block.modules() if isinstance(m, FeedForward)), None)
    qkv = _linear_width(attention, emb_dim) if attention is not None else 3 * emb_dim
    hidden = _linear_width(feedforward, emb_dim) if feedforward is not None else 4 * emb_dim
    per_token = (2 * norms * emb_dim + qkv + 2 * emb_dim + 2 * hidden) * element
    if dropout > 0:
        per_token += 2 * emb_dim  # the two residual dropouts' masks
    if not fused:
        per_token += heads * tokens * (4 + (1 + 4 if dropout > 0 else 0))
    return batch * tokens * per_token


def _linear_width(module: nn.Module, emb_dim: int) -> int:
    """Output widths of a module's linear layers, less the one back to ``emb_dim``."""
    widths = [m.out_features for m in module.modules() if isinstance(m, nn.Linear)]
    return max(0, sum(widths) - emb_dim)


def _first_trainable_block(model: Model) -> int:
    """Index of the first block that (or whose inputs) a gradient reaches; ``len(blocks)`` if none."""
    layout = model.layout()
    if layout.embedding is not None and any(p.requires_grad for p in layout.embedding.parameters()):
        return 0
    for index, block in enumerate(layout.blocks):
        if any(p.requires_grad for p in block.parameters()):
            return index
    return len(layout.blocks)


def _fused_attention(config: Config, device: torch.device) -> bool:
    """Whether attention avoids keeping ``tokens x tokens`` weights per head for backward.

    ``sdpa`` does on a GPU; on the CPU its fused kernel takes no dropout and no score bias, so
    it falls back to the maths (asked of torch itself). Every other attention keeps them.
    """
    model = config.model
    if model.attention.name != "sdpa":
        return False
    if device.type != "cpu":
        return True
    relative = model.positional.name in ("alibi", "t5_bias")
    if relative:
        return False
    try:
        probe = torch.zeros(1, 1, 2, 8)
        choice = torch._fused_sdp_choice(probe, probe, probe, dropout_p=model.dropout, is_causal=True)
        return int(choice) != 0  # 0: the maths
    except Exception:  # noqa: BLE001 - an older torch: the documented rule
        return model.dropout == 0


def _token_cache_bytes(config: Config, registry: Registry, vocab: int, notes: list[str]) -> int:
    """At most one token per byte of a ``text`` source's files; other sources are not counted."""
    try:
        source = registry.build("datasource", config.data.source)
        files = source.files() if hasattr(source, "files") else None
    except LlmbricksError:
        files = None  # a missing path is reported where the data is read
    if files is None:
        notes.append(f"token cache of data source '{config.data.source.name}' not counted")
        return 0
    size = sum(path.stat().st_size for path in files if path.is_file())
    return size * (2 if vocab <= 1 << 16 else 4)


# --- what the machine has ---------------------------------------------------------------------


def current_rss() -> int:
    """This process's resident memory (``VmRSS``), or 0 where ``/proc`` has none."""
    return _proc_field(Path("/proc/self/status"), "VmRSS") or 0


def _proc_field(path: Path, name: str) -> int | None:
    """A ``Name:  123 kB`` line of a /proc file, in bytes."""
    try:
        match = re.search(rf"^{name}:\s+(\d+)\s*kB", path.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) * 1024 if match else None


def _cgroup_room() -> int | None:
    """What the cgroup limit leaves (v2 ``memory.max``, else v1), or ``None`` without a limit."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:  # v1 writes a huge number for "no limit"
            return max(0, int(limit) - usage)
    return None


def available_memory(device: torch.device | str = "cpu") -> int | None:
    """Bytes a run in this process can use on ``device``, or ``None`` where it cannot be told.

    CPU: ``MemAvailable`` (capped by the cgroup's limit) plus what this process already holds,
    shared among the ranks of a multi-process run on this machine. CUDA: the device's free memory.
    """
    device = torch.device(device)
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except Exception:  # noqa: BLE001 - no driver to ask: no check
            return None
    if device.type != "cpu":
        return None
    room = _proc_field(Path("/proc/meminfo"), "MemAvailable")
    if room is None:
        return None
    cgroup = _cgroup_room()
    if cgroup is not None:
        room = min(room, cgroup)
    try:
        local_ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        local_ranks = 1
    return room // local_ranks + current_rss()


def check_memory(config: Config, device: torch.device | str = "cpu",
                 registry: Registry | None = None) -> MemoryEstimate | None:
    """Refuse (``ConfigError``) a config whose training cannot fit on ``device``.

    Returns the estimate, or ``None`` when ``LLMBRICKS_SKIP_MEMORY_CHECK`` is set.
    """
    if os.environ.get(SKIP_ENV, "").strip() not in ("", "0"):
        return None
    estimate = estimate_memory(config, registry, device=device)
    available = available_memory(device)
    if available is not None and estimate.total > available:
        raise ConfigError(refusal(estimate, available))
    return estimate


def refusal(estimate: MemoryEstimate, available: int) -> str:
    """The one line that refuses a config: the estimate, its parts and the memory there is."""
    where = "the machine has" if estimate.device == "cpu" else f"{estimate.device} has"
    return (f"this config needs about {gib(estimate.total)} GiB to train ({estimate.breakdown()}) "
            f"but {where} {gib(available)} GiB available; lower train.batch_size or "
            f"model.context_length, or set {SKIP_ENV}=1 to train anyway")


def _optimizer_state(config: Config, registry: Registry) -> float:
    """Floats of optimizer state per trainable parameter: the optimizer says (AdamW: 2)."""
    return float(registry.get("optimizer", config.train.optimizer.name).state_per_parameter)
