"""Built-in positional encodings."""

from llmbricks.core.hookspecs import hookimpl


@hookimpl
def llmbricks_components():
    from .absolute import AbsolutePositional
    from .alibi import ALiBiPositional
    from .none import NoPositional
    from .rope import RotaryPositional
    from .sinusoidal import SinusoidalPositional
    from .t5_bias import T5RelativeBias

    return [AbsolutePositional, SinusoidalPositional, RotaryPositional, ALiBiPositional,
            T5RelativeBias, NoPositional]
