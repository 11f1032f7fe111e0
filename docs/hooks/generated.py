"""mkdocs hook: pages (or parts of pages) made from the project's own data at every build.

A page asks for a part with a marker line, `<!-- generated: NAME ... -->`:

- `presets`: the built-in preprocessing presets, from models/presets.json;
- `benchmarks`: one table per report in benchmarks/results/, with the machine, date and command
  from benchmarks/results/runs.json (a report without an entry there fails the build);
- `exit-codes`: imgclass.errors.ExitCode with the comment beside each member;
- `errors`: every message the package raises, found by reading the source (ast), grouped by the
  exception's class, with what to do from ADVICE below (a class without advice fails the build).

Each renderer is a plain function of the repository root, so tests/test_docs.py can call them.
"""

from __future__ import annotations

import ast
import io
import json
import re
import tokenize
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"^<!-- generated: ([a-z-]+)\b.*-->$", re.MULTILINE)


def _cell(value: Any) -> str:
    text = re.sub(r"\s+", " ", str(value)).strip()
    return text.replace("|", "\\|").replace("<", "&lt;")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


# ----- presets ---------------------------------------------------------------------------------


def presets(root: Path = ROOT) -> str:
    data = json.loads((root / "models" / "presets.json").read_text())
    rows = []
    for name, p in data["presets"].items():
        resize = p["resize"] + (f", crop_pct {p['crop_pct']:.4g}" if p["resize"] != "squash" else "")
        mean = ", ".join(f"{m:.4g}" for m in p["mean"])
        std = ", ".join(f"{s:.4g}" for s in p["std"])
        size = p.get("default_size", "")
        rows.append([f"`{name}`", p["description"], resize, p["interpolation"], f"{p['scale']:.6g}", mean, std,
                     p["channel_order"], size])  # fmt: skip
    intro = f"Generated from `models/presets.json` (the default is `{data['default']}`). {data.get('comment', '')}\n\n"
    header = ["preset", "what it reproduces", "resize", "interpolation", "scale", "mean", "std", "channels", "size"]
    return intro + _table(header, rows)


# ----- benchmarks -------------------------------------------------------------------------------


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        out: list[tuple[str, Any]] = []
        for key, item in value.items():
            out += _flatten(item, f"{prefix}.{key}" if prefix else str(key))
        return out
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
        return [(prefix, ", ".join(f"{v:g}" for v in value))]
    return [(prefix, f"{value:.4g}" if isinstance(value, float) else value)]


def _tables(data: dict[str, Any], skip: set[str]) -> str:
    """A report as tables: its top-level numbers in one, and each set of sections that share the same
    measures side by side (one column per section: int8 and fp32, or one per calibration method)."""
    listed = {k: v for k, v in data.items() if isinstance(v, list) and v and all(isinstance(i, dict) for i in v)}
    plain = {k: v for k, v in data.items() if not isinstance(v, dict) and k not in listed}
    scalars = [[f"`{key}`", value] for key, value in _flatten(plain)
               if key not in skip]  # fmt: skip
    groups: dict[tuple[str, ...], list[str]] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key not in skip:
            groups.setdefault(tuple(k for k, _ in _flatten(value)), []).append(key)
    out = [_table(["measure", "value"], scalars)] if scalars else []
    for measures, sections in groups.items():
        flat = {section: dict(_flatten(data[section])) for section in sections}
        rows = [[f"`{m}`", *(flat[section][m] for section in sections)] for m in measures]
        out.append(_table(["measure", *(f"`{section}`" for section in sections)], rows))
    for key, items in listed.items():  # one row per item (a round), one column per measure
        if key not in skip:
            columns = list(dict.fromkeys(c for item in items for c, _ in _flatten(item)))
            rows = [[n + 1, *(dict(_flatten(item)).get(c, "") for c in columns)] for n, item in enumerate(items)]
            out.append(_table([f"`{key}`", *(f"`{c}`" for c in columns)], rows))
    return "\n\n".join(out)


def benchmarks(root: Path = ROOT) -> str:
    folder = root / "benchmarks" / "results"
    runs = json.loads((folder / "runs.json").read_text())
    parts = []
    for path in sorted(folder.glob("*.json")):
        if path.name == "runs.json":
            continue
        if path.name not in runs:
            raise ValueError(f"{path}: no entry in benchmarks/results/runs.json (machine, date, command)")
        run = runs[path.name]
        data = json.loads(path.read_text())
        parts.append(
            f"## {run['title']}\n\n"
            f"- **machine:** {run['machine']}\n- **date:** {run['date']}\n"
            f"- **command:** `{run['command']}`\n- **report:** `benchmarks/results/{path.name}`\n\n"
            + (f"{run['note']}\n\n" if run.get("note") else "")
            + _tables(data, set(run.get("leave_out", [])))
        )
    return "\n\n".join(parts)


# ----- exit codes -------------------------------------------------------------------------------


def _member_comments(source: str, cls: str) -> dict[str, str]:
    """NAME -> the comment on its line, for the members of one class in errors.py."""
    comments: dict[str, str] = {}
    inside = False
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.NAME and token.string == cls and token.start[1] == 6:
            inside = True
        elif inside and token.type == tokenize.COMMENT:
            line = token.line.strip()
            if "=" in line:
                comments[line.split("=")[0].strip()] = token.string.lstrip("# ")
        elif inside and token.type == tokenize.DEDENT and token.start[1] == 0:
            break
    return comments


def exit_codes(root: Path = ROOT) -> str:
    from imgclass.errors import ExitCode

    comments = _member_comments((root / "imgclass" / "errors.py").read_text(), "ExitCode")
    rows = [[code.value, f"`{code.name}`", comments.get(code.name, "")] for code in ExitCode]
    return _table(["code", "`imgclass.ExitCode`", "meaning"], rows)


# ----- every error message ------------------------------------------------------------------------

ADVICE = {
    "UsageError": "Fix the command line: the message names the option, value or input. `imgclass COMMAND --help` "
    "lists what each option takes.",
    "MissingExtra": "Install the extra the message names (`pip install 'imgclass[EXTRA]'`) in the same environment.",
    "ModelError": "The model (or the way to it) is the problem: check the path or name (`imgclass models list`), "
    "the network or `IMGCLASS_MIRROR`, or pull a fresh copy (`imgclass models pull NAME`); "
    "`imgclass models info MODEL` shows what imgclass read from it.",
    "ConfigError": "Fix the sidecar (`MODEL.json`, `preprocessor_config.json`, `config.json`) or the ONNX "
    "metadata the message names; the message names the key and the nearest valid one.",
    "InputError": "One image failed; the rest of the run went on. The record's `error` says why: convert or "
    "replace the file, or raise `--max-pixels` / use `--allow-truncated` where the message suggests it.",
    "EnvironmentFault": "The machine is the problem: free disk space, make the folder writable, or point "
    "`IMGCLASS_HOME` elsewhere.",
    "OutputError": "Choose another `--output`, free disk space, or use `--force` / `--resume` where the message "
    "says so (imgclass never replaces a file it did not write).",
    "CacheError": "Make the cache writable or set `IMGCLASS_HOME` to a folder that is; "
    "`imgclass cache prune` is always safe; `imgclass models verify` finds damaged models.",
    "ImgclassError": "Read the message: it names what to change.",
}


# Raised with a message of their own making and an exit code of their own: described in the page's prose.
OWN_SECTION = {"Interrupted"}  # "stopped by signal N" after a second Ctrl-C or SIGTERM (exit 128 + N)


def _error_classes(root: Path) -> tuple[dict[str, str], list[str]]:
    """Every exception class in the package that derives from ImgclassError -> its nearest public class."""
    import imgclass.errors as errors

    public = [n for n, v in vars(errors).items() if isinstance(v, type) and issubclass(v, errors.ImgclassError)]
    bases: dict[str, list[str]] = {}
    for path in (root / "imgclass").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases[node.name] = [ast.unparse(b).split(".")[-1] for b in node.bases]

    def public_of(name: str, depth: int = 0) -> str | None:
        if name in public:
            return name
        for base in bases.get(name, []) if depth < 10 else []:
            found = public_of(base, depth + 1)
            if found:
                return found
        return None

    kinds = {name: kind for name in set(bases) | set(public) if (kind := public_of(name))}
    return kinds, public


def _message(node: ast.expr | None) -> str | None:
    """The text of a message argument, with each run-time value shown as ‹expression›."""
    if node is None:
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        out = ""
        for part in node.values:
            if isinstance(part, ast.Constant):
                out += str(part.value)
            elif isinstance(part, ast.FormattedValue):
                out += "‹" + ast.unparse(part.value) + "›"
        return out
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _message(node.left), _message(node.right)
        return None if left is None or right is None else left + right
    return "‹" + ast.unparse(node) + "›"


def raise_sites(root: Path = ROOT) -> list[tuple[str, str, str]]:
    """(public class, message, module) for every `raise SomeImgclassError(...)` in the package."""
    kinds, _ = _error_classes(root)
    sites = []
    for path in sorted((root / "imgclass").rglob("*.py")):
        module = ".".join(path.relative_to(root).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                continue
            name = ast.unparse(node.exc.func).split(".")[-1]
            if name not in kinds or name in OWN_SECTION:
                continue
            args = node.exc.args
            if name == "MissingExtra" and len(args) >= 2:
                text = f"{_message(args[1])} needs the optional extra: pip install 'imgclass[{_message(args[0])}]'"
            else:
                text = _message(args[0] if args else None) or "(no message)"
            sites.append((kinds[name], text.replace("\n", " "), module))
    return sites


def errors(root: Path = ROOT) -> str:
    import imgclass.errors as errors_module

    sites = raise_sites(root)
    parts = []
    for kind in sorted({k for k, _, _ in sites}, key=lambda k: (getattr(errors_module, k).exit_code, k)):
        if kind not in ADVICE:
            raise ValueError(f"docs/hooks/generated.py: no ADVICE for {kind}")
        cls = getattr(errors_module, kind)
        messages = sorted({(text, module) for k, text, module in sites if k == kind})
        parts.append(
            f"### {kind} (exit {int(cls.exit_code)})\n\n{(cls.__doc__ or '').strip()}\n\n"
            f"**What to do:** {ADVICE[kind]}\n\n"
            + _table(
                ["message", "raised in"], [[t.replace("*", "\\*").replace("[", "\\["), f"`{m}`"] for t, m in messages]
            )
        )
    return (
        f"{len(sites)} messages, read from the source at every build (‹…› is filled in at run time).\n\n"
        + "\n\n".join(parts)
    )


# Record errors that are not exceptions: (module file, constant) holding the text.
RECORD_ERRORS = [("imgclass/inference/pipeline.py", "NON_FINITE")]


def record_errors(root: Path = ROOT) -> list[tuple[str, str]]:
    """(message, module) of each error text a record can carry without an exception behind it."""
    found = []
    for file, constant in RECORD_ERRORS:
        tree = ast.parse((root / file).read_text())
        values = [n.value for n in tree.body if isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == constant]
        if not values:
            raise ValueError(f"docs/hooks/generated.py: {file} has no {constant} any more")
        found.append((_message(values[0]) or "", ".".join(Path(file).with_suffix("").parts)))
    return found


def stderr_lines(root: Path = ROOT) -> list[tuple[str, str]]:
    """(text, module) of every line the command line itself writes to stderr (`env.err(...)`)."""
    lines = []
    for path in sorted((root / "imgclass" / "cli").rglob("*.py")):
        module = ".".join(path.relative_to(root).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "err":
                text = _message(node.args[0] if node.args else None)
                if text:
                    lines.append((text.replace("\n", " "), module))
    return sorted(set(lines))


def cli_messages(root: Path = ROOT) -> str:
    rows = [[t.replace("*", "\\*").replace("[", "\\["), f"`{m}`"] for t, m in record_errors(root)]
    extra = _table(["record error", "set in"], rows)
    rows = [[t.replace("*", "\\*").replace("[", "\\["), f"`{m}`"] for t, m in stderr_lines(root)]
    return (
        extra
        + "\n\nThe lines the command line writes on stderr around those messages:\n\n"
        + _table(["line on stderr", "written by"], rows)
    )


RENDERERS: dict[str, Callable[[Path], str]] = {
    "cli-messages": cli_messages,
    "presets": presets,
    "benchmarks": benchmarks,
    "exit-codes": exit_codes,
    "errors": errors,
}


def render(markdown: str, root: Path = ROOT) -> str:
    """The page with each marker followed by what it asks for."""

    def fill(match: re.Match[str]) -> str:
        return match.group(0) + "\n\n" + RENDERERS[match.group(1)](root) + "\n"

    return MARKER.sub(fill, markdown)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    return render(markdown)
