"""Module paths from before the rooms existed still import, with one warning naming the new path."""

from __future__ import annotations

import importlib
import sys

import pytest

from llmbricks.core import MOVED_MODULES


@pytest.mark.parametrize("old", sorted(MOVED_MODULES))
def test_an_old_path_warns_and_serves_the_same_objects(old):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to "):
        alias = importlib.import_module(old)
    homes = [importlib.import_module(home) for home in MOVED_MODULES[old]]
    names = [n for home in homes for n in vars(home) if not n.startswith("_")]
    assert names
    for name in names:
        owner = next(home for home in homes if hasattr(home, name))
        assert getattr(alias, name) is getattr(owner, name)


def test_the_token_pipeline_names_are_found_in_either_new_module():
    sys.modules.pop("llmbricks.core.data", None)
    with pytest.warns(DeprecationWarning):
        from llmbricks.core.data import SlidingWindowDataset, make_loader, prepare_data
    from llmbricks.core.store.token_cache import prepare_data as new_prepare
    from llmbricks.core.train.windows import SlidingWindowDataset as new_windows
    from llmbricks.core.train.windows import make_loader as new_loader

    assert (SlidingWindowDataset, make_loader, prepare_data) == (new_windows, new_loader, new_prepare)


def test_an_unknown_name_is_an_import_error():
    sys.modules.pop("llmbricks.core.runs", None)
    with pytest.warns(DeprecationWarning), pytest.raises(ImportError, match="no_such_name"):
        from llmbricks.core.runs import no_such_name  # noqa: F401
