"""Built-in plugins, one package per kind. Each package's ``__init__`` is one entry point."""
