"""TensorBoard: loss curves and samples next to other runs, in a tool people already use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from llmbricks.core.component import ParamsModel
from llmbricks.core.errors import ComponentError
from llmbricks.core.interfaces import Logger

#: event -> ((field, TensorBoard tag), ...)
SCALARS: dict[str, tuple[tuple[str, str], ...]] = {
    "step": (("loss", "train/loss"), ("lr", "train/lr"), ("grad_norm", "train/grad_norm"),
             ("tokens_per_s", "train/tokens_per_s")),
    "eval": (("train_loss", "eval/train_loss"), ("val_loss", "eval/val_loss"),
             ("val_ppl", "eval/val_ppl")),
}


def _summary_writer() -> type:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ComponentError("logger 'tensorboard' needs the tensorboard package: "
                             "pip install 'llmbricks[tensorboard]'") from None
    return SummaryWriter


def _text_block(text: str) -> str:
    """TensorBoard renders text as Markdown; indenting makes a code block that keeps newlines."""
    return "\n".join("    " + line for line in text.split("\n"))


class TensorBoardLogger(Logger):
    """Scalars and samples for TensorBoard (needs the tensorboard extra)."""

    name = "tensorboard"

    class Params(ParamsModel):
        dir: str = Field("tensorboard", description="event-file folder inside the run directory "
                                                    "(or an absolute path)")

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self._writer_cls = _summary_writer()  # fail when the config is built, not at step 1
        self._writer: Any = None

    def log(self, event: str, **fields: Any) -> None:
        if event == "start" and fields.get("run_dir") is not None:
            self._open(Path(fields["run_dir"]) / self.params.dir, fields)
        if self._writer is None:
            return
        step, walltime = fields.get("step"), fields.get("time")
        for key, tag in SCALARS.get(event, ()):
            value = fields.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self._writer.add_scalar(tag, value, global_step=step, walltime=walltime)
        if event == "sample":
            text = f"{fields.get('prompt') or ''}{fields.get('text') or ''}"
            self._writer.add_text("samples", _text_block(text), global_step=step,
                                  walltime=walltime)
        if event in ("eval", "checkpoint", "end"):
            self._writer.flush()

    def _open(self, directory: Path, start: dict[str, Any]) -> None:
        self.close()
        step = start.get("step") or 0
        # A resumed run restarts at its checkpoint (``step`` steps done): hide what the killed run
        # logged after it, so TensorBoard draws each step once.
        purge = step + 1 if start.get("resumed") and step > 0 else None
        self._writer = self._writer_cls(str(directory), purge_step=purge)
        facts = {k: start.get(k) for k in ("max_steps", "tokens_per_step", "params",
                                           "world_size", "config_name", "resumed")}
        self._writer.add_text("run", "\n".join(f"- {k}: {v}" for k, v in facts.items()),
                              global_step=step, walltime=start.get("time"))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
