"""Built-in learning-rate schedules: constant, cosine (the default), linear, wsd, inverse_sqrt."""

from llmbricks.core.hookspecs import hookimpl


@hookimpl
def llmbricks_components():
    from llmbricks.plugins.schedules.curves import (
        ConstantSchedule,
        CosineSchedule,
        InverseSqrtSchedule,
        LinearSchedule,
        WSDSchedule,
    )

    return [ConstantSchedule, CosineSchedule, LinearSchedule, WSDSchedule, InverseSqrtSchedule]
