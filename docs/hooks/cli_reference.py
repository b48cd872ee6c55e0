"""MkDocs hook: the CLI reference, written from the real ``--help`` of every command at build time.

A page holding the line ``<!-- charlm-cli-reference -->`` gets, in its place, ``python -m charlm --help`` and
then ``python -m charlm COMMAND --help`` for every command that help lists, and ``fit --data.help CLASS`` for
every data module ``fit --help`` names. Nothing is typed by hand, so the page cannot drift from the code; a
command whose help fails fails the build.

A page holding ``<!-- readme-export-sampler -->`` gets the python block of README.md's section "Export"
(the sampler that tests/infer/test_export.py runs), so the two cannot differ.

The commands run with this interpreter (``sys.executable``) from the repository root, one thread each
(OMP_NUM_THREADS=1), as many at once as there are CPUs. Their text is kept for the life of the process:
``mkdocs serve`` shows a changed ``--help`` after a restart.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from mkdocs.exceptions import PluginError

CLI_MARKER = "<!-- charlm-cli-reference -->"
SAMPLER_MARKER = "<!-- readme-export-sampler -->"
COLUMNS = "92"  # argparse wraps at $COLUMNS: a code block of the site's width
TIMEOUT_S = 180

_cache: dict[str, str] = {}  # the generated Markdown, once per process


def _run(root: Path, *args: str) -> str:
    """The standard output of ``python -m charlm ARGS``, the repository's absolute path taken out."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": COLUMNS, "PYTHONPATH": str(root),
           "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "-m", "charlm", *args]
    try:
        done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=TIMEOUT_S,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise PluginError(f"cli_reference: `charlm {' '.join(args)}` took over {TIMEOUT_S} s") from None
    if done.returncode != 0:
        raise PluginError(f"cli_reference: `charlm {' '.join(args)}` exited {done.returncode}:\n{done.stderr}")
    return done.stdout.replace(f"{root}{os.sep}", "").rstrip() + "\n"


def commands(top_help: str) -> list[tuple[str, str]]:
    """(name, one-line summary) of each command under "Available subcommands:" in ``charlm --help``."""
    found: list[tuple[str, str]] = []
    listing = top_help.split("Available subcommands:", 1)[-1] if "Available subcommands:" in top_help else ""
    for line in listing.splitlines():
        if match := re.fullmatch(r" {4}([a-z][\w-]*)(?: +(.*))?", line):
            found.append((match[1], match[2] or ""))
        elif found and line.startswith(" " * 8) and line.strip():  # a summary wrapped onto the next line
            name, summary = found[-1]
            found[-1] = (name, f"{summary} {line.strip()}".strip())
    if not found:
        raise PluginError("cli_reference: `charlm --help` lists no commands under 'Available subcommands:'")
    return found


def data_modules(fit_help: str) -> list[str]:
    """The data modules ``fit --help`` names as known subclasses of ``--data``'s base class, minus the base."""
    option = re.search(r"^ +--data CONFIG\b", fit_help, re.MULTILINE)  # the option's entry, not the usage line
    block = fit_help[option.end():] if option else ""
    base = re.search(r"subclass of\s+(\w+)", block)
    known = re.search(r"known subclasses:(.*?)\)", block, re.DOTALL)
    if not (base and known):
        raise PluginError("cli_reference: `charlm fit --help` names no data modules under --data")
    names = [name.strip().rsplit(".", 1)[-1] for name in known[1].replace("\n", " ").split(",")]
    return [name for name in names if name and name != base[1]]


def _block(level: str, command: str, text: str, summary: str = "") -> str:
    """A heading naming the command, its summary, and its output as a text block."""
    lines = [f"{level} `{command}`", ""]
    if summary:
        lines += [summary, ""]
    return "\n".join([*lines, "```text", text.rstrip(), "```", ""])


def reference(root: Path) -> str:
    """The Markdown of the whole reference: every command's ``--help``, then every data module's."""
    top = _run(root, "--help")
    listed = commands(top)
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        helps: dict[str, Future[str]] = {name: pool.submit(_run, root, name, "--help") for name, _ in listed}
        modules: dict[str, Future[str]] = {}
        if "fit" in helps:  # the data modules' flags live behind fit --data.help CLASS
            modules = {name: pool.submit(_run, root, "fit", "--data.help", name)
                       for name in data_modules(helps["fit"].result())}
        texts = {name: future.result() for name, future in helps.items()}
        module_texts = {name: future.result() for name, future in modules.items()}

    parts = ["| command | what it does |", "| --- | --- |"]
    parts += [f"| [`{name}`](#charlm-{name}) | {summary} |" for name, summary in listed]
    parts += ["", _block("##", "charlm --help", top)]
    for name, summary in listed:
        parts.append(_block("##", f"charlm {name}", texts[name], summary))
    if module_texts:
        parts += ["## Data modules", "",
                  "`fit`, `validate` and `test` pick a corpus with `--data CLASS`.",
                  "Each class has its own `--data.*` flags, shown by `charlm fit --data.help CLASS`.", ""]
        parts += [_block("###", f"charlm fit --data.help {name}", text) for name, text in module_texts.items()]
    return "\n".join(parts)


def readme_sampler(root: Path) -> str:
    """The python block of README.md's section "Export", as a fenced block."""
    readme = (root / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Export\n", 1)[-1].split("\n## ", 1)[0] if "\n## Export\n" in readme else ""
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    if len(blocks) != 1:
        raise PluginError("cli_reference: README.md's section 'Export' should hold one python block, the sampler")
    return f"```python\n{blocks[0]}```"


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Put the generated text in place of the markers (see the module docstring)."""
    root = Path(config["config_file_path"]).resolve().parent
    if CLI_MARKER in markdown:
        if "cli" not in _cache:
            _cache["cli"] = reference(root)
        markdown = markdown.replace(CLI_MARKER, _cache["cli"])
    if SAMPLER_MARKER in markdown:
        markdown = markdown.replace(SAMPLER_MARKER, readme_sampler(root))
    return markdown
