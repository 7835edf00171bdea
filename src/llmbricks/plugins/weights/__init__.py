"""GPT-2 weight interop: ``llmbricks import gpt2`` and ``llmbricks export hf`` (Hugging Face layout).

The logic lives in :mod:`.gpt2_hf` (a Python API); this hook only adds the CLI verbs.
"""

from llmbricks.core.hookspecs import hookimpl


@hookimpl
def llmbricks_commands(cli):
    from llmbricks.plugins.weights.cli import export_group, import_group

    cli.add_command(import_group, "import")
    cli.add_command(export_group, "export")
