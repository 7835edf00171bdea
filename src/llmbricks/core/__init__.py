"""The core: interfaces and machinery. It imports nothing from ``plugins`` or ``cli``."""
