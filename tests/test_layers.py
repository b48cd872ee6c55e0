"""The house's floors: every import of charlm/ and datamodules/ runs down (or stays in its room).

Floors, lowest first; a module imports only from its own room or from a lower floor, and two rooms on one
floor do not import each other (what both need lives below both):

    0  datamodules/common      errors, reaches into libraries, rank-zero notes
    1  datamodules/io          atomic writes, downloads, the prepared cache and its vocabulary
    2  datamodules/sources, datamodules/batches
    3  datamodules             the base data module and the corpora
    4  charlm core             version, compat, devices, model, checkpoint
    5  charlm/infer, charlm/train
    6  charlm/callbacks, charlm/serve
    7  charlm/cli
    8  charlm/api, charlm/__main__, charlm (the package: the front door)
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

CORE = ("charlm.version", "charlm.compat", "charlm.devices", "charlm.model", "charlm.checkpoint")
ROOMS = {  # prefix -> (room, floor); the longest prefix of a module's name decides its room
    "datamodules.common": ("datamodules/common", 0), "datamodules.io": ("datamodules/io", 1),
    "datamodules.sources": ("datamodules/sources", 2), "datamodules.batches": ("datamodules/batches", 2),
    "datamodules": ("datamodules", 3),
    **dict.fromkeys(CORE, ("charlm core", 4)),
    "charlm.infer": ("charlm/infer", 5), "charlm.train": ("charlm/train", 5),
    "charlm.callbacks": ("charlm/callbacks", 6), "charlm.serve": ("charlm/serve", 6), "charlm.cli": ("charlm/cli", 7),
    "charlm.api": ("front door", 8), "charlm.__main__": ("front door", 8), "charlm": ("front door", 8),
}


def room(module: str) -> tuple[str, int]:
    prefix = max((p for p in ROOMS if module == p or module.startswith(p + ".")), key=len)
    return ROOMS[prefix]


def modules() -> dict[str, Path]:
    found = {}
    for package in ("charlm", "datamodules"):
        for path in (REPO / package).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """The project modules ``path`` imports anywhere in it (inside functions and TYPE_CHECKING too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


def test_every_import_runs_down_a_floor_or_stays_in_its_room():
    found = modules()
    wrong = []
    for module, path in found.items():
        (here, floor) = room(module)
        for target in imports(path, set(found)) - {module}:
            (there, target_floor) = room(target)
            if target_floor > floor or (target_floor == floor and there != here):
                wrong.append(f"{module} (floor {floor}, {here}) imports {target} (floor {target_floor}, {there})")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_room_holds_more_than_a_dozen_modules():
    counts: dict[Path, int] = {}
    for path in modules().values():
        if path.name != "__init__.py":
            counts[path.parent] = counts.get(path.parent, 0) + 1
    assert max(counts.values()) <= 12, {str(k.relative_to(REPO)): v for k, v in counts.items() if v > 12}


def test_every_module_says_what_it_holds():
    missing = [name for name, path in modules().items() if not ast.get_docstring(ast.parse(path.read_text()))]
    assert not missing, missing


def test_inference_and_the_command_line_import_no_lightning():
    # start-up time: `charlm sample` and friends, the page and the Python API load no Lightning; fit / validate /
    # test (cli/commands/fit.py) are the only commands that train, and the one module of cli/ that imports it
    lightning_users = []
    for module, path in modules().items():
        if module.startswith(("charlm.infer", "charlm.cli")) and module != "charlm.cli.commands.fit":
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                    [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
                if any(name.split(".")[0] in ("lightning", "pytorch_lightning") for name in names):
                    lightning_users.append(module)
    assert not lightning_users, lightning_users
