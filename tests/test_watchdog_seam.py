"""clerk uses watchdog only through its public seam (issue 12).

watchdog's internals change in patch releases (7.1.1 rewrote the inotify reader that
clerk once subclassed), so clerk may import only its public modules and may neither read
nor override a name that watchdog keeps private (one starting with `_`). clerk's inotify
emitter is an `EventEmitter` whose `queue_events` calls `queue_event`; everything below
that seam (the inotify fd, the watch descriptors, the parsing) is clerk's own.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "clerk"

# the modules of watchdog's documented API that clerk builds on
PUBLIC_MODULES = {"watchdog.events", "watchdog.observers.api", "watchdog.observers.polling"}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def problems_in(source: str, where: str) -> list[str]:
    """Every use of watchdog in `source` that goes past its public seam."""
    tree = ast.parse(source)
    problems: list[str] = []
    watchdog_names: set[str] = set()  # names bound to something imported from watchdog
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "watchdog":
                    if alias.name != "watchdog" and alias.name not in PUBLIC_MODULES:
                        problems.append(f"{where}:{node.lineno}: imports {alias.name}")
                    watchdog_names.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "watchdog":
            module = node.module or ""
            for alias in node.names:
                full = f"{module}.{alias.name}"
                if full in PUBLIC_MODULES:  # from watchdog import events
                    pass
                elif module not in PUBLIC_MODULES:
                    problems.append(f"{where}:{node.lineno}: imports {alias.name} from {module}")
                elif _private(alias.name):
                    problems.append(f"{where}:{node.lineno}: imports {full}")
                watchdog_names.add(alias.asname or alias.name)
    if not watchdog_names:
        return problems

    def from_watchdog(expr: ast.expr) -> bool:
        while isinstance(expr, ast.Attribute):
            expr = expr.value
        return isinstance(expr, ast.Name) and expr.id in watchdog_names

    derived: set[str] = set()  # classes of this module with a watchdog class among their bases
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(
            from_watchdog(base) or (isinstance(base, ast.Name) and base.id in derived)
            for base in node.bases
        ):
            derived.add(node.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr) and from_watchdog(node.value):
            problems.append(f"{where}:{node.lineno}: reads {ast.unparse(node)}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
        ):
            problems.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.ClassDef) and node.name in derived:
            # a subclass of a watchdog class: whatever `self._x` it touches may be
            # watchdog's own state, and a `_x` method overrides watchdog's internals
            for inner in ast.walk(node):
                if isinstance(inner, ast.FunctionDef | ast.AsyncFunctionDef):
                    if _private(inner.name) and inner in node.body:
                        problems.append(f"{where}:{inner.lineno}: {node.name}.{inner.name}")
                elif (
                    isinstance(inner, ast.Attribute)
                    and _private(inner.attr)
                    and isinstance(inner.value, ast.Name)
                    and inner.value.id in ("self", "cls", "super")
                ):
                    problems.append(f"{where}:{inner.lineno}: {node.name} uses self.{inner.attr}")
                elif (
                    isinstance(inner, ast.Attribute)
                    and _private(inner.attr)
                    and isinstance(inner.value, ast.Call)
                    and isinstance(inner.value.func, ast.Name)
                    and inner.value.func.id == "super"
                ):
                    problems.append(
                        f"{where}:{inner.lineno}: {node.name} uses super().{inner.attr}"
                    )
                elif isinstance(inner, ast.Assign | ast.AnnAssign) and inner in node.body:
                    targets = inner.targets if isinstance(inner, ast.Assign) else [inner.target]
                    for target in targets:
                        if isinstance(target, ast.Name) and _private(target.id):
                            problems.append(f"{where}:{inner.lineno}: {node.name}.{target.id}")
    return problems


def test_clerk_touches_no_private_watchdog_name() -> None:
    problems: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        problems += problems_in(path.read_text(), str(path.relative_to(PACKAGE.parent)))
    assert problems == []


def test_the_check_sees_each_way_past_the_seam() -> None:
    # what watch.py did before issue 12, one way at a time: each must be caught
    cases = {
        "from watchdog.observers.inotify_c import InotifyFD": "imports InotifyFD",
        "from watchdog.observers.api import BaseObserver\nBaseObserver._lock": "reads",
        "import watchdog.observers.inotify": "imports watchdog.observers.inotify",
        "from watchdog.observers import api\napi._private_helper()": "reads api._private_helper",
        "from watchdog.observers.api import EventEmitter\n"
        "class E(EventEmitter):\n    def _read(self): pass": "E._read",
        "from watchdog.observers.api import EventEmitter\n"
        "class E(EventEmitter):\n    def run(self):\n        self._watch = 1": "uses self._watch",
        "from watchdog.observers.api import BaseObserver\n"
        "class O(BaseObserver):\n    _emitters = set()": "O._emitters",
        "from watchdog.events import FileSystemEvent\n"
        "def f(e: FileSystemEvent): return getattr(e, '_x')": "getattr",
        "from watchdog.observers.api import EventEmitter\n"
        "class E(EventEmitter):\n    def run(self):\n        super()._x()": "super()._x",
        "from watchdog.observers.api import EventEmitter\n"
        "class E(EventEmitter):\n    pass\n"
        "class F(E):\n    def _read(self): pass": "F._read",
    }
    for source, wanted in cases.items():
        found = problems_in(source, "case")
        assert len(found) == 1 and wanted in found[0], (source, found)
    public = (
        "from watchdog.observers.api import BaseObserver, EventEmitter\n"
        "from watchdog import events as ev\n"
        "class E(EventEmitter):\n"
        "    def queue_events(self, timeout):\n"
        "        self.queue_event(ev.FileCreatedEvent(self.watch.path))\n"
        "class Mine:\n    def __init__(self): self._own = 1\n"
    )
    assert problems_in(public, "case") == []
