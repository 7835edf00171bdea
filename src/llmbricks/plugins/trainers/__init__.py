"""Built-in trainers: each composes ``llmbricks.core.train.loop`` with its own batches and loss."""

from llmbricks.core.hookspecs import hookimpl


@hookimpl
def llmbricks_components():
    from llmbricks.plugins.trainers.classify import ClassifyTrainer
    from llmbricks.plugins.trainers.instruct import InstructTrainer
    from llmbricks.plugins.trainers.pretrain import PretrainTrainer

    return [PretrainTrainer, ClassifyTrainer, InstructTrainer]
