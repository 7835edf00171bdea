"""Built-in prompt templates: how an instruction record becomes training text."""

from llmbricks.core.hookspecs import hookimpl


@hookimpl
def llmbricks_components():
    from llmbricks.plugins.prompts.chat import ChatTemplate
    from llmbricks.plugins.prompts.templates import AlpacaTemplate, Phi3Template

    return [AlpacaTemplate, Phi3Template, ChatTemplate]
