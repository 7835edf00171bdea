"""Built-in positional encodings."""

from llmbricks.core.hookspecs import hookimpl


@hookimpl
def llmbricks_components():
    from llmbricks.plugins.positional.absolute import AbsolutePositional
    from llmbricks.plugins.positional.alibi import ALiBiPositional
    from llmbricks.plugins.positional.none import NoPositional
    from llmbricks.plugins.positional.rope import RotaryPositional
    from llmbricks.plugins.positional.sinusoidal import SinusoidalPositional
    from llmbricks.plugins.positional.t5_bias import T5RelativeBias

    return [AbsolutePositional, SinusoidalPositional, RotaryPositional, ALiBiPositional,
            T5RelativeBias, NoPositional]
