"""The Click CLI: a thin layer over the public API, one module per verb group."""
