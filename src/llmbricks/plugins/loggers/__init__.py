"""Built-in loggers: a console progress bar, a metrics.jsonl file and TensorBoard."""

from llmbricks.core.hookspecs import hookimpl


@hookimpl
def llmbricks_components():
    from .console import ConsoleLogger
    from .jsonl import JsonlLogger
    from .tensorboard import TensorBoardLogger

    return [ConsoleLogger, JsonlLogger, TensorBoardLogger]
