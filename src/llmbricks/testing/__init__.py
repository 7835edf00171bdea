"""The conformance kit: the bar every component of a kind must meet, ours and third-party ones.

``check_component(kind, name)`` builds the component through the real registry and config
machinery and asserts the kind's contract: shapes, no future-token leak, state_dict round trip,
seeded determinism, cached-vs-uncached equivalence for the kinds that touch attention, and
round trips for tokenizers. Use it from a plugin's own tests::

    from llmbricks.testing import check_component

    def test_my_rope():
        check_component("positional", "my_rope")

The pytest fixtures (``isolated_registry``, ``registry_with``) come with the package through a
``pytest11`` entry point.
"""

from __future__ import annotations

from llmbricks.testing.conformance import ConformanceError, check_component

__all__ = ["ConformanceError", "check_component"]
