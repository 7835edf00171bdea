"""``llmbricks chat``: a conversation with a model in a terminal, or scripted through a pipe.

The conversation itself (template, trimming, settings, saving) is ``core.tasks.chat.Conversation``;
this module reads lines, runs the slash commands and prints. At a terminal it shows a banner and
a prompt, Ctrl-C stops an answer (or clears the line) and Ctrl-D leaves. Piped, each line is a
message or a command and stdout holds only the answers, so a script can read them; an error is
printed and the next line read, and the exit code is the first error's.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from llmbricks.cli.options import sampling_options

PROMPT = ">>> "
COMMANDS_HELP = """\
/reset            forget the conversation (the system message and the settings stay)
/system TEXT      set the system message (/system alone clears it)
/set NAME VALUE   change a setting: max_new_tokens, temperature, top_k, top_p, seed
                  ('none' turns top_k, top_p or seed off); /set alone shows them
/save FILE        write the messages and the settings as JSON
/help             this list
/exit             leave (Ctrl-D too)
//TEXT            send a message that starts with '/'
Ctrl-C stops an answer (what was said is kept); at the prompt it clears the line."""


@click.command()
@click.argument("source", metavar="RUN")
@click.option("--system", "-s", help="The system message (a template without a system role gets "
              "it as text; /system changes it).")
# Ranges are checked by the core (check_generation_params), as for `generate`: one policy.
@click.option("--max-new-tokens", "-n", type=int,
              help="Most tokens per answer, below the context length (default: 256, or half the "
                   "context when that is shorter).")
@sampling_options
@click.option("--seed", type=int, help="Seed for sampling, 0 to 2**63-1: answer k (from 0) samples "
              "with seed + k, so a conversation replays exactly.")
@click.pass_context
def chat(ctx: click.Context, source: str, system: str | None, max_new_tokens: int | None,
         temperature: float, top_k: int | None, top_p: float | None, seed: int | None) -> None:
    """Chat with RUN (a run directory, or a model directory such as `import hf` writes).

    Each answer is streamed as it is generated. The conversation is kept in the model's prompt
    template (the run's data.prompt, else the model's own chat template, else alpaca) and stops
    at its end token; the oldest turns leave the prompt when it outgrows the context. Type /help
    for the commands.

    Piped, each line is a message or a command and only the answers are printed:
    printf 'hi\\n/reset\\nhello\\n' | llmbricks chat RUN
    """
    from llmbricks.cli.generate import load_source
    from llmbricks.core.store.text_input import check_text
    from llmbricks.core.tasks.chat import Conversation
    from llmbricks.core.tasks.generation import check_generation_params

    given = {} if max_new_tokens is None else {"max_new_tokens": max_new_tokens}
    check_generation_params(**given, temperature=temperature, top_k=top_k, top_p=top_p,
                            seed=seed, cli=True)  # before the model loads: a typo fails at once
    if system is not None:
        check_text(system, "--system")
    config, model, tokenizer = load_source(source)
    conversation = Conversation(model, tokenizer, config, system=system,
                                max_new_tokens=max_new_tokens, temperature=temperature,
                                top_k=top_k, top_p=top_p, seed=seed, cli=True)
    ctx.exit(Session(conversation, source, interactive=sys.stdin.isatty()).run())


class Session:
    """The read-answer loop around a ``Conversation``; ``run()`` returns the exit code."""

    def __init__(self, conversation: Any, source: str, *, interactive: bool) -> None:
        self.conversation, self.source, self.interactive = conversation, source, interactive
        self.first_error = 0
        self.lines = 0  # lines read from a pipe
        self.commands = {"reset": self.reset, "system": self.system, "set": self.set,
                         "save": self.save, "help": self.help}

    def run(self) -> int:
        from llmbricks.core.errors import LlmbricksError

        if self.interactive:
            try:
                import readline  # noqa: F401  (line editing and history for input())
            except ImportError:  # pragma: no cover - Python built without it
                pass
            self.banner()
        while True:
            try:
                line = self.read()
                if line is None or not self.handle(line):
                    return 0 if self.interactive else self.first_error
            except KeyboardInterrupt:  # a command was running: stop it, not the program
                if not self.interactive:
                    raise
                click.echo()
            except LlmbricksError as exc:
                click.echo(f"error: {exc}", err=True)
                self.first_error = self.first_error or exc.exit_code

    def read(self) -> str | None:
        """The next line; ``None`` at the end of input (Ctrl-D)."""
        if not self.interactive:
            from llmbricks.core.store.text_input import check_text

            raw = sys.stdin.buffer.readline()
            if not raw:
                return None
            self.lines += 1
            # Bad UTF-8 is kept as surrogates, for check_text to report by line and byte offset.
            return check_text(raw.decode("utf-8", "surrogateescape").rstrip("\r\n"),
                              f"line {self.lines}")
        while True:
            try:
                return input(PROMPT)
            except KeyboardInterrupt:  # Ctrl-C at the prompt clears the line
                click.echo()
            except EOFError:
                click.echo()
                return None
            except UnicodeDecodeError as exc:
                click.echo(f"error: the line is not valid UTF-8 ({exc.reason} at byte "
                           f"{exc.start}); type it again", err=True)

    def handle(self, line: str) -> bool:
        """Answer a message or run a command; ``False`` to leave."""
        from llmbricks.core.errors import InputError

        text = line.strip()
        if not text:
            return True
        if not text.startswith("/") or text.startswith("//"):
            self.answer(text[1:] if text.startswith("//") else text)
            return True
        name, _, argument = text[1:].partition(" ")
        name = name.lower()
        if name in ("exit", "quit"):
            return False
        if name not in self.commands:
            raise InputError(f"unknown command '/{name}': /help lists the commands (start a "
                             "message with // to send a '/')")
        self.commands[name](argument.strip())
        return True

    # --- answers and notes ------------------------------------------------------------------

    def answer(self, text: str) -> None:
        def show(piece: str) -> None:
            click.echo(piece, nl=False)

        try:
            self.conversation.reply(text, on_text=show, on_trim=self.note)
        except KeyboardInterrupt:
            click.echo()
            self.note("[answer stopped: what was said so far is kept as the answer]")
            if not self.interactive:
                raise
            return
        click.echo()

    def note(self, text: str) -> None:
        """A one-line note on stderr (stdout is the answers')."""
        click.echo(text, err=True)

    def told(self, text: str) -> None:
        """A command's acknowledgement: at a terminal only, a script knows what it asked."""
        if self.interactive:
            self.note(text)

    def banner(self) -> None:
        conversation = self.conversation
        template = getattr(conversation.template, "name", type(conversation.template).__name__)
        click.echo(f"llmbricks chat: {self.source} (template '{template}', "
                   f"{conversation.context_length}-token context). /help lists the commands; "
                   "Ctrl-D leaves.")

    # --- commands ---------------------------------------------------------------------------

    def reset(self, argument: str) -> None:
        self.conversation.reset()
        self.told("[conversation reset]")

    def system(self, argument: str) -> None:
        how = self.conversation.set_system(argument or None)
        self.told(f"[system message set: {how}]" if argument else "[system message cleared]")

    def set(self, argument: str) -> None:
        from llmbricks.core.errors import InputError
        from llmbricks.core.tasks.chat import setting_name

        if not argument:
            settings = self.conversation.settings.as_options()
            click.echo("  ".join(f"{name} {'none' if value is None else value}"
                                 for name, value in settings.items()))
            return
        name, _, value = argument.partition(" ")
        if not value.strip():
            raise InputError(f"/set {name}: give a value, as in /set temperature 0.7")
        new = self.conversation.set(name, value)
        self.told(f"[{setting_name(name)} = {'none' if new is None else new}]")

    def save(self, argument: str) -> None:
        from llmbricks.core.errors import InputError

        if not argument:
            raise InputError("/save needs a file: /save FILE")
        path = self.conversation.save(argument)
        count = len(self.conversation.messages)
        self.told(f"[saved {count} message{'' if count == 1 else 's'} to {path}]")

    def help(self, argument: str) -> None:
        click.echo(COMMANDS_HELP)
