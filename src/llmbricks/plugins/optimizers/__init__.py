"""Built-in optimizers: AdamW (the default), SGD, Lion and Muon."""

from llmbricks.core.hookspecs import hookimpl


@hookimpl
def llmbricks_components():
    from llmbricks.plugins.optimizers.adamw import AdamWOptimizer
    from llmbricks.plugins.optimizers.lion import LionOptimizer
    from llmbricks.plugins.optimizers.muon import MuonOptimizer
    from llmbricks.plugins.optimizers.sgd import SGDOptimizer

    return [AdamWOptimizer, SGDOptimizer, LionOptimizer, MuonOptimizer]
