"""Built-in trainers: each composes ``llmbricks.core.loop`` with its own batches and loss."""

from llmbricks.core.hookspecs import hookimpl


@hookimpl
def llmbricks_components():
    from .classify import ClassifyTrainer
    from .instruct import InstructTrainer
    from .pretrain import PretrainTrainer

    return [PretrainTrainer, ClassifyTrainer, InstructTrainer]
