"""The core: the kernel at this package's root, and the rooms below it.

Kernel (this folder): component base, interfaces, hookspecs, registry, config and its file I/O,
errors, build, masks, the KV cache. It imports nothing else of llmbricks. Rooms, each importing
only the ones listed before it: ``store`` (files on disk), ``train`` (the loop and its parts),
``tasks`` (generation, evaluation, classification, instruction data, merge, smoke) and
``ablation``. Nothing in core imports ``plugins`` or ``cli``.

Modules that lived at this folder's root before the rooms existed still import from their old
paths (``llmbricks.core.runs``...), with a deprecation warning naming the new one.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

#: Old module path -> where its names live now (the token pipeline became two modules).
MOVED_MODULES: dict[str, tuple[str, ...]] = {
    f"{__name__}.{old}": tuple(f"{__name__}.{n}" for n in new.split()) for old, new in {
        "runs": "store.runs", "model_dir": "store.model_dir",
        "data": "store.token_cache train.windows",
        "datafiles": "store.datafiles", "loop": "train.loop", "optim": "train.optim",
        "batches": "train.batches", "splits": "train.splits", "trainable": "train.trainable",
        "distributed": "train.distributed", "plots": "train.plots", "training": "train.session",
        "generation": "tasks.generation", "evaluation": "tasks.evaluation",
        "classification": "tasks.classification", "classifier": "tasks.classifier",
        "instruction": "tasks.instruction", "merge": "tasks.merge", "smoke": "tasks.smoke",
    }.items()
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves an old module path: a module whose names are looked up where they live now."""

    def find_spec(self, fullname: str, path: object = None, target: object = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED_MODULES:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        homes = MOVED_MODULES[spec.name]
        warnings.warn(f"{spec.name} moved to {' and '.join(homes)}; import it from there",
                      DeprecationWarning, stacklevel=2)
        modules = [importlib.import_module(home) for home in homes]
        alias = ModuleType(spec.name, f"Moved to {', '.join(homes)}.")

        def lookup(name: str) -> object:
            for module in modules:
                if hasattr(module, name):
                    return getattr(module, name)
            raise AttributeError(f"module {spec.name!r} (now {', '.join(homes)}) has no "
                                 f"attribute {name!r}")

        alias.__getattr__ = lookup  # type: ignore[method-assign]  # PEP 562
        return alias

    def exec_module(self, module: ModuleType) -> None:
        """The module ran when it was imported under its new name: nothing more to do."""


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())
