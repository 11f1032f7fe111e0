"""mkdocs hook: the CLI reference, generated from the app's command tree (never written by hand).

It walks the command tree the app builds: click's today, `typer.main.get_command(app)` once
the CLI is on Typer (both give the same kind of tree). Only the generic command/parameter API is
used (name, help, epilog, params with opts, help, default, envvar, and `rich_help_panel` where a
parameter or command has one), so the walker does not care which click is underneath (Typer
ships its own copy). One page per top-level command (a group's subcommands are on its page),
options grouped by help panel, plus an index of every command.

`pages()` is importable on its own: tests/test_docs.py checks every command is documented.
"""

from __future__ import annotations

import html
import re
from typing import Any

SECTION = "CLI reference"
FOLDER = "reference/cli"
PROG = "imgclass"


def root_command() -> Any:
    """The root click-style command of the `imgclass` app (click today, Typer's tree once ported)."""
    from imgclass.cli import app as app_module

    build = getattr(app_module, "command", None)  # the Typer CLI: the whole app's command tree, built on demand
    if callable(build) and hasattr(tree := build(), "params"):
        return tree
    app = getattr(app_module, "app", None) or app_module.make_app()
    if hasattr(app, "params") and hasattr(app, "commands"):  # already a command (click)
        return app
    import typer.main  # a typer.Typer: the command tree Typer builds from it

    return typer.main.get_command(app)


def _context(command: Any, name: str, parent: Any = None) -> Any:
    return command.context_class(command, info_name=name, parent=parent)


def subcommands(command: Any, ctx: Any) -> list[tuple[str, Any]]:
    """(name, command) for each visible subcommand, in the order the app lists them."""
    if not hasattr(command, "list_commands"):
        return []
    found = []
    for name in command.list_commands(ctx):
        sub = command.get_command(ctx, name)
        if sub is not None and not getattr(sub, "hidden", False):
            found.append((name, sub))
    return found


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell (no markup from help text, no broken rows)."""
    text = re.sub(r"\s+", " ", text or "").strip()
    return html.escape(text, quote=False).replace("|", "\\|")


_RICH_TAG = (
    r"\[/?(?:bold|b|italic|i|dim|underline|u|red|green|yellow|blue|cyan|magenta|white|bright_[a-z]+|link(?:=[^\]]*)?)\]"
)


def _strip_rich(text: str) -> str:
    """Typer's rich markup ([bold]...[/bold]) is for the terminal; the page shows the words."""
    return re.sub(_RICH_TAG, "", text or "")


def _paragraphs(text: str | None) -> str:
    """A command's help as Markdown paragraphs (click's \\b markers and indentation dropped)."""
    lines = [line.strip() for line in _strip_rich(text or "").replace("\b", "").splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _summary(command: Any) -> str:
    """The first paragraph of a command's help: what the index lists."""
    return (getattr(command, "short_help", None) or _paragraphs(command.help).split("\n\n")[0]).replace("\n", " ")


def _default(param: Any) -> str:
    default = getattr(param, "default", None)
    default = getattr(default, "value", default)  # an Enum member: its value
    if not isinstance(default, (str, int, float, list, tuple)) or default is False or default in ((), [], ""):
        return ""  # None, a callable, or click's "no default" sentinel
    if getattr(param, "is_flag", False) and default is True:
        return "on"
    if isinstance(default, (list, tuple)):
        return ", ".join(map(str, default))
    return str(default)


def _type(param: Any) -> str:
    kind = getattr(param, "type", None)
    if getattr(param, "is_flag", False):
        return "flag"
    choices = getattr(kind, "choices", None)
    if choices:
        return " | ".join(f"`{getattr(c, 'value', c)}`" for c in choices)
    name = getattr(kind, "name", "") or ""
    return name.lower() if name else ""


def _names(param: Any) -> str:
    if param.param_type_name == "argument":
        text = param.human_readable_name.upper() + ("..." if getattr(param, "nargs", 1) == -1 else "")
        return f"`{text}`"
    names = list(param.opts) + list(getattr(param, "secondary_opts", []))
    return ", ".join(f"`{n}`" for n in names)


def panels(command: Any) -> dict[str, list[Any]]:
    """The command's visible parameters by help panel, in declaration order."""
    grouped: dict[str, list[Any]] = {}
    for param in command.params:
        if getattr(param, "hidden", False):
            continue
        argument = param.param_type_name == "argument"
        panel = getattr(param, "rich_help_panel", None) or ("Arguments" if argument else "Options")
        grouped.setdefault(panel, []).append(param)
    return grouped


def _param_rows(params: list[Any]) -> list[str]:
    rows = ["| name | type | default | env | description |", "|---|---|---|---|---|"]
    for param in params:
        envvar = getattr(param, "envvar", None)
        envvars = [envvar] if isinstance(envvar, str) else list(envvar or [])
        help_text = _strip_rich(getattr(param, "help", None) or "")
        if getattr(param, "required", False):
            help_text = (help_text + " (required)").strip()
        default = _default(param)
        rows.append(
            f"| {_names(param)} | {_cell(_type(param))} | {f'`{_cell(default)}`' if default else ''} "
            f"| {', '.join(f'`{e}`' for e in envvars)} | {_cell(help_text)} |"
        )
    return rows


def _epilog(command: Any) -> list[str]:
    epilog = (getattr(command, "epilog", None) or "").replace("\b", "").strip("\n")
    if not epilog:
        return []
    lines = _strip_rich(epilog).splitlines()
    title = lines[0].strip() if lines and lines[0].strip().endswith(":") else ""
    body = [line[2:] if line.startswith("  ") else line for line in (lines[1:] if title else lines)]
    out = [f"**{title[:-1]}**", ""] if title else []
    return out + ["<!-- docs-test: skip: reference examples, run in the guides -->", "```sh", *body, "```", ""]


def command_section(command: Any, ctx: Any, level: int = 1, recurse: bool = True) -> list[str]:
    """Markdown for one command (and, recursively, its subcommands)."""
    full = ctx.command_path
    usage = " ".join(command.collect_usage_pieces(ctx))
    usage = re.sub(r"\{(\w+)\}", lambda m: m.group(1).upper(), usage)  # Typer's metavar placeholders
    help_text = _paragraphs(command.help)
    out = [f"{'#' * level} `{full}`", "", help_text, ""]
    out += ["<!-- docs-test: skip: a usage line, not a command -->", "```text", f"{full} {usage}".rstrip(), "```", ""]
    for panel, params in panels(command).items():
        out += [f"{'#' * min(level + 1, 6)} {panel}", "", *_param_rows(params), ""]
    out += _epilog(command)
    for sub_name, sub in subcommands(command, ctx) if recurse else []:
        out += command_section(sub, _context(sub, sub_name, ctx), min(level + 1, 5))
    return out


def pages() -> dict[str, str]:
    """{'reference/cli/index.md': ..., 'reference/cli/<command>.md': ...} for the whole app."""
    root = root_command()
    ctx = _context(root, PROG)
    result: dict[str, str] = {}
    index = [
        "# Command-line reference",
        "",
        "Generated from the app's own command tree by `docs/hooks/cli_reference.py` at every build: "
        "every command, option, default, environment variable and help panel is what `--help` shows.",
        "",
        *command_section(root, ctx, 2, recurse=False)[:-1],
        "",
        "## Commands",
        "",
        "| command | what it does |",
        "|---|---|",
    ]
    for name, command in subcommands(root, ctx):
        sub_ctx = _context(command, name, ctx)
        index.append(f"| [`{PROG} {name}`]({name}.md) | {_cell(_summary(command))} |")
        result[f"{FOLDER}/{name}.md"] = "\n".join(command_section(command, sub_ctx)) + "\n"
    result[f"{FOLDER}/index.md"] = "\n".join(index) + "\n"
    return result


_PAGES: dict[str, str] = {}


def on_config(config: Any) -> Any:
    """Put one nav entry per command under the 'CLI reference' section."""
    _PAGES.clear()
    _PAGES.update(pages())
    entries = [f"{FOLDER}/index.md"] + [p for p in _PAGES if not p.endswith("/index.md")]  # the app's order
    nav_entries = [{"Overview": entries[0]}] + [{f"imgclass {p.rsplit('/', 1)[1][:-3]}": p} for p in entries[1:]]
    for item in config["nav"] or []:
        if isinstance(item, dict) and SECTION in item:
            item[SECTION] = nav_entries
    return config


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for uri, content in _PAGES.items():
        files.append(File.generated(config, uri, content=content))
    return files
