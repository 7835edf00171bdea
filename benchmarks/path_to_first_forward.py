"""How far `llmbricks train` travels before the model's first forward pass.

Runs the real CLI in process (`llmbricks train CONFIG --out TMP`) under a profiler hook that
records every llmbricks function called until the first call of a model's ``forward``, then stops
the run. Prints the files and functions visited and how often the path crosses between ``core``
and ``plugins`` (counted on the call sequence of llmbricks functions, ignoring library code).

    python benchmarks/path_to_first_forward.py examples/configs/quickstart.yaml \
        --set data.source=python_docs

Used for the figures in docs/architecture.md ("The path of `llmbricks train`").
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import tempfile
from pathlib import Path

PACKAGE = "llmbricks"


#: How many llmbricks frames deep a call may be to show as a step (main is 0).
TREE_DEPTH = 4


#: How many of the longest functions on the path to list.
LONGEST = 6

#: Import machinery and class-creation hooks: they run, but nobody follows them to read the path.
NOT_STEPS = {"find_spec", "__init_subclass__"}


class FirstForward(BaseException):
    """Raised from the profiler hook to stop the run at the first forward pass (a BaseException,
    so the CLI's error handler lets it through, as it does Ctrl-C)."""


def area(module: str) -> str:
    """``core``, ``plugins`` or ``cli`` (the top of llmbricks a function lives in)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "llmbricks"


def trace(config: str, overrides: list[str]) -> dict[str, object]:
    from llmbricks.cli.main import main

    calls: list[tuple[str, str]] = []  # (module, qualified function) in call order
    stack: list[tuple[str, str]] = []  # the llmbricks frames from `main` down to the forward
    tree: list[tuple[int, str]] = []  # calls near the top: the steps of the path
    lengths: dict[str, int] = {}  # each function's length in lines (def to last line)

    def hook(frame, event, arg):  # noqa: ANN001 - sys.setprofile's signature
        if event != "call":
            return
        module = frame.f_globals.get("__name__", "")
        if not module.startswith(PACKAGE + "."):
            return
        code = frame.f_code
        name = getattr(code, "co_qualname", code.co_name)
        if code.co_name == "forward" and _is_model(frame):
            stack.extend(_llmbricks_stack(frame))
            raise FirstForward
        if code.co_name.startswith("<") or not code.co_flags & inspect.CO_NEWLOCALS \
                or "__create_fn__" in name or code.co_name in NOT_STEPS:
            return  # comprehensions, lambdas, module and class bodies, generated dataclass code
        calls.append((module, name))
        lengths[f"{module}.{name}"] = _lines(code)
        depth = len(_llmbricks_stack(frame)) - 1
        if depth <= TREE_DEPTH:
            tree.append((depth, f"{module}.{name}"))

    with tempfile.TemporaryDirectory() as tmp:
        argv = ["train", config, *[a for o in overrides for a in ("--set", o)],
                "--out", str(Path(tmp) / "run"), "--set", "train.loggers=[]"]
        sys.setprofile(hook)
        try:
            main(argv)
        except (FirstForward, SystemExit):
            pass
        finally:
            sys.setprofile(None)
    modules = list(dict.fromkeys(m for m, _ in calls))
    functions = list(dict.fromkeys(f"{m}.{f}" for m, f in calls))
    areas = [area(m) for m, _ in calls]
    crossings = sum(1 for a, b in zip(areas, areas[1:], strict=False)
                    if {a, b} == {"core", "plugins"})
    stack_areas = [area(m) for m, _ in stack]
    return {"stack_depth": len(stack), "stack_files": len(dict.fromkeys(m for m, _ in stack)),
            "stack_crossings": sum(1 for a, b in zip(stack_areas, stack_areas[1:], strict=False)
                                   if a != b),
            "files": len(modules), "functions": len(functions), "calls": len(calls),
            "core_plugin_crossings": crossings, "function_names": functions,
            "longest": sorted(lengths.items(), key=lambda kv: -kv[1])[:LONGEST], "steps": _collapse(tree), "stack": [f"{m}.{f}" for m, f in stack],
            "modules": modules}


def _lines(code) -> int:  # noqa: ANN001
    """Lines from the ``def`` to the function's last line (docstring and comments included)."""
    last = max((end for _, _, end in code.co_lines() if end is not None), default=code.co_firstlineno)
    return last - code.co_firstlineno + 1


def _collapse(tree: list[tuple[int, str]]) -> list[str]:
    """Indented steps, each call shown once per parent (repeated calls in a row collapse)."""
    shown: list[str] = []
    for depth, name in tree:
        line = "  " * depth + name
        if not shown or shown[-1] != line:
            shown.append(line)
    return shown


def _llmbricks_stack(frame) -> list[tuple[str, str]]:  # noqa: ANN001
    """The llmbricks frames on the stack, outermost first."""
    frames = []
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith(PACKAGE + "."):
            code = frame.f_code
            frames.append((module, getattr(code, "co_qualname", code.co_name)))
        frame = frame.f_back
    return frames[::-1]


def _is_model(frame) -> bool:  # noqa: ANN001
    from llmbricks.core.interfaces import Model

    return isinstance(frame.f_locals.get("self"), Model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = trace(args.config, args.overrides)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"the stack at the first forward: {result['stack_depth']} llmbricks frames in "
          f"{result['stack_files']} files, {result['stack_crossings']} changes of area "
          "(cli/core/plugins)")
    for step in result["stack"]:
        print(f"  {step}")
    print(f"its steps ({TREE_DEPTH} llmbricks frames deep at most):")
    for step in result["steps"]:
        print(f"  {step}")
    print("the longest functions on the path (lines):")
    for name, lines in result["longest"]:
        print(f"  {lines:4d}  {name}")
    print(f"before it: {result['calls']} llmbricks calls to {result['functions']} functions in "
          f"{result['files']} files, {result['core_plugin_crossings']} core<->plugins crossings")


if __name__ == "__main__":
    main()
