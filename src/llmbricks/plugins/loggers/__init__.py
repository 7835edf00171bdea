"""Built-in loggers: a console progress bar, a metrics.jsonl file and TensorBoard."""

from llmbricks.core.hookspecs import hookimpl


@hookimpl
def llmbricks_components():
    from llmbricks.plugins.loggers.console import ConsoleLogger
    from llmbricks.plugins.loggers.jsonl import JsonlLogger
    from llmbricks.plugins.loggers.tensorboard import TensorBoardLogger

    return [ConsoleLogger, JsonlLogger, TensorBoardLogger]
