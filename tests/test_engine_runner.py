"""The DAG runner with the shell executor: order, limits, retries, timeouts, argv safety,
logs and resource usage, with real processes and a real SQLite store."""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from clerk.engine.api import Command, Executor, ProcessExecutor, TaskContext, TaskResult
from clerk.engine.fields import dump_fields, file_fields
from clerk.engine.model import build_workflow
from clerk.engine.runner import Runner
from clerk.engine.runs import CANCELLED, COMPLETED, FAILED, RunStore
from clerk.plugins.manager import make_plugin_manager
from clerk.store import open_store

PY = sys.executable

# Appends "<name> start|end <time>" lines to a marker file. In between it waits until
# the file has `starts` start lines (at most 5s: fewer means less parallelism than
# expected, and the test says so), then sleeps `pause`.
MARK = """
import sys, time
marker, name, pause, starts = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
with open(marker, "a") as f:
    f.write(f"{name} start {time.time()}\\n")
deadline = time.monotonic() + 5
while time.monotonic() < deadline:
    with open(marker) as f:
        if f.read().count(" start ") >= starts:
            break
    time.sleep(0.01)
time.sleep(pause)
with open(marker, "a") as f:
    f.write(f"{name} end {time.time()}\\n")
"""


class Engine:
    """A store, the registered executors and a runner factory, all real."""

    def __init__(self, tmp: Path, hooks: Any = None):
        self.tmp = tmp
        self.db = open_store(tmp / "clerk.db")
        self.store = RunStore(self.db)
        self.pm = hooks or make_plugin_manager()
        self.executors = self.pm.registry().executors

    def submit(self, definition: dict[str, Any], fields: dict[str, Any] | None = None,
               name: str = "wf") -> int:  # fmt: skip
        workflow = build_workflow(name, definition)
        return self.store.create_run(workflow, dump_fields(fields or {}))

    def runner(self, **options: Any) -> Runner:
        options.setdefault("kill_grace", 0.2)
        return Runner(self.db, self.executors, logs_dir=self.tmp / "logs", hooks=self.pm,
                      **options)  # fmt: skip

    def run(self, definition: dict[str, Any], fields: dict[str, Any] | None = None,
            **options: Any) -> int:  # fmt: skip
        run_id = self.submit(definition, fields)
        self.runner(**options).execute([run_id])
        return run_id

    def task(self, run_id: int, name: str) -> Any:
        return next(t for t in self.store.tasks(run_id) if t.task == name)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return Engine(tmp_path)


def marks(path: Path) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for line in path.read_text().splitlines():
        name, what, ts = line.split()
        out.setdefault(name, {})[what] = float(ts)
    return out


def max_overlap(spans: list[tuple[float, float]]) -> int:
    points = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    best = current = 0
    for _, delta in points:
        current += delta
        best = max(best, current)
    return best


def script(tmp: Path, code: str) -> str:
    """A Python script file (task commands are templates: braces in -c code are fields)."""
    path = tmp / f"script{abs(hash(code))}.py"
    path.write_text(code)
    return str(path)


def mark_task(name: str, marker: Path, pause: float, deps: list[str] | None = None,
              starts: int = 0) -> dict:  # fmt: skip
    task: dict[str, Any] = {"name": name, "executor": "shell",
                            "command": [PY, script(marker.parent, MARK), str(marker), name,
                                        str(pause), str(starts)]}  # fmt: skip
    if deps:
        task["depends_on"] = deps
    return task


@pytest.mark.parametrize(
    ("parallelism", "max_workers", "expected"), [(2, 4, 2), (None, 1, 1), (None, 4, 3)]
)
def test_diamond_runs_in_dependency_order_within_the_limits(
    engine: Engine, tmp_path: Path, parallelism: int | None, max_workers: int, expected: int
) -> None:
    marker = tmp_path / "marks"
    middle = ["b", "c", "e"]
    definition: dict[str, Any] = {"tasks": [
        mark_task("a", marker, 0),
        # each middle task waits for `expected` of them (and a) to have started
        *(mark_task(name, marker, 0.2, ["a"], starts=expected + 1) for name in middle),
        mark_task("d", marker, 0, middle),
    ]}  # fmt: skip
    if parallelism:
        definition["parallelism"] = parallelism
    run_id = engine.run(definition, max_workers=max_workers)

    assert engine.store.run(run_id).status == COMPLETED
    m = marks(marker)
    assert m["a"]["end"] <= min(m[n]["start"] for n in middle)
    assert m["d"]["start"] >= max(m[n]["end"] for n in middle)
    assert max_overlap([(m[n]["start"], m[n]["end"]) for n in middle]) == expected


def test_every_state_change_is_a_durable_row_and_event(engine: Engine, tmp_path: Path) -> None:
    run_id = engine.submit({"tasks": [{"name": "one", "executor": "shell",
                                       "command": ["true"]}]})  # fmt: skip
    assert engine.store.run(run_id).status == "PENDING"
    assert [t.status for t in engine.store.tasks(run_id)] == ["PENDING"]
    engine.runner().execute([run_id])
    # a fresh connection sees what the runner committed
    store = RunStore(open_store(tmp_path / "clerk.db"))
    run = store.run(run_id)
    assert run.status == COMPLETED and run.started and run.finished >= run.started
    kinds = [e["kind"] for e in store.events(run_id)]
    assert kinds == ["run_created", "run_started", "task_started", "task_completed",
                     "run_completed"]  # fmt: skip


def test_retries_follow_the_exponential_backoff(engine: Engine, tmp_path: Path) -> None:
    stamps = tmp_path / "attempts"
    code = f"import time; open({str(stamps)!r}, 'a').write(f'{{time.time()}}\\n'); exit(7)"
    task = {"name": "flaky", "executor": "shell", "command": [PY, script(tmp_path, code)],
            "retry": {"max": 2, "backoff": "0.3s", "factor": 2, "jitter": 0}}  # fmt: skip
    run_id = engine.run({"tasks": [task]})

    times = [float(x) for x in stamps.read_text().split()]
    assert len(times) == 3  # the first try and two retries
    assert 0.3 <= times[1] - times[0] < 1.3
    assert 0.6 <= times[2] - times[1] < 1.6
    info = engine.task(run_id, "flaky")
    assert (info.status, info.attempt, info.exit_code, info.error_code) == (FAILED, 3, 7, "exit")
    delays = [
        e["data"]["delay"] for e in engine.store.events(run_id) if e["kind"] == "task_retried"
    ]
    assert delays == [0.3, 0.6]


def test_jitter_stretches_each_delay_by_at_most_its_fraction(engine: Engine) -> None:
    task = {"name": "t", "executor": "shell", "command": ["false"],
            "retry": {"max": 4, "backoff": "0.01s", "factor": 2, "jitter": 0.5}}  # fmt: skip
    run_id = engine.run({"tasks": [task]}, rng=random.Random(7))
    delays = [
        e["data"]["delay"] for e in engine.store.events(run_id) if e["kind"] == "task_retried"
    ]
    bases = [0.01, 0.02, 0.04, 0.08]
    assert len(delays) == 4
    assert all(b <= d <= b * 1.5 + 0.001 for b, d in zip(bases, delays, strict=True))
    assert delays != [round(b, 3) for b in bases]  # the jitter did something


def test_a_task_that_succeeds_on_retry_completes_the_run(engine: Engine, tmp_path: Path) -> None:
    counter = tmp_path / "count"
    code = (
        f"import pathlib; p = pathlib.Path({str(counter)!r}); n = len(p.read_text())"
        " if p.exists() else 0; p.write_text('x' * (n + 1)); exit(0 if n >= 2 else 1)"
    )
    run_id = engine.run({"tasks": [
        {"name": "t", "executor": "shell", "command": [PY, script(tmp_path, code)],
         "retry": {"max": 5, "backoff": "0.01s"}},
        {"name": "after", "executor": "shell", "command": ["true"], "depends_on": ["t"]},
    ]})  # fmt: skip
    assert engine.store.run(run_id).status == COMPLETED
    assert engine.task(run_id, "t").attempt == 3
    assert engine.task(run_id, "after").status == COMPLETED


SPAWNER = """
import subprocess, sys, time
pids = [subprocess.Popen(["sleep", "60"]).pid for _ in range(2)]
# a grandchild too, through an intermediate shell that waits
pids.append(subprocess.Popen(["sh", "-c", "sleep 60 & echo $!; wait"],
                             stdout=subprocess.PIPE).stdout.readline().decode().strip())
open(sys.argv[1], "w").write(" ".join(str(p) for p in pids))
if sys.argv[2] == "hang":
    time.sleep(60)
"""


def survivors(pid_file: Path) -> list[int]:
    # the task wrote it before it could be killed (a generous timeout: a loaded machine
    # may take a second to start Python)
    assert pid_file.exists(), "the task was killed before it spawned its children"
    pids = [int(p) for p in pid_file.read_text().split()]
    # SIGKILL is delivered asynchronously: give the kernel a moment (with a deadline)
    deadline = time.monotonic() + 5
    while True:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def test_a_timeout_kills_the_whole_process_group(engine: Engine, tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    started = time.monotonic()
    run_id = engine.run({"tasks": [
        {"name": "hang", "executor": "shell", "timeout": "2.5s", "retry": {"max": 0},
         "command": [PY, script(tmp_path, SPAWNER), str(pid_file), "hang"]},
    ]})  # fmt: skip
    assert time.monotonic() - started < 10
    info = engine.task(run_id, "hang")
    assert (info.status, info.error_code) == (FAILED, "timeout")
    assert "timed out after 2.5s" in info.error
    assert info.pgid == info.pid and info.pid
    assert survivors(pid_file) == []


def test_processes_a_task_leaves_behind_are_killed_when_it_exits(
    engine: Engine, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pids"
    run_id = engine.run({"tasks": [
        {"name": "spawn", "executor": "shell",
         "command": [PY, script(tmp_path, SPAWNER), str(pid_file), "exit"]},
    ]})  # fmt: skip
    assert engine.task(run_id, "spawn").status == COMPLETED
    assert survivors(pid_file) == []


@pytest.mark.parametrize("name", ["$(touch pwned)", "-rf", "a;b", "line1\nline2", "`id` & x|y"])
def test_file_names_reach_the_command_verbatim(engine: Engine, tmp_path: Path, name: str) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / name).write_text("x")
    out = tmp_path / "argv.json"
    script = "import json, sys; open(sys.argv[1], 'w').write(json.dumps(sys.argv[2:]))"
    task = {"name": "t", "executor": "shell", "cwd": str(inbox),
            "command": [PY, "-c", script, str(out), "{name}", "{path}", "x{stem}y"]}  # fmt: skip
    fields = file_fields(str(inbox / name))
    run_id = engine.run({"tasks": [task]}, fields)
    assert engine.store.run(run_id).status == COMPLETED
    assert json.loads(out.read_text()) == [name, str(inbox / name), f"x{fields['stem']}y"]
    assert sorted(os.listdir(inbox)) == [name]  # nothing ran `touch pwned`


def test_env_cwd_params_and_capped_logs(engine: Engine, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CLERK_TEST_SECRET", "s3cret-value")
    script = ("import os, sys; print(os.getcwd()); print(os.environ['GREETING']);"
              " print(os.environ['TOKEN'][::-1], os.environ['TOKEN']);"
              " sys.stdout.write('z' * 50000);"
              " sys.stderr.write('to stderr')")  # fmt: skip
    task = {"name": "t", "executor": "shell", "command": [PY, "-c", script], "cwd": "{where}",
            "env": {"GREETING": "hello {who}", "TOKEN": "${env:CLERK_TEST_SECRET}"}}  # fmt: skip
    run_id = engine.run({"tasks": [task]}, {"where": str(tmp_path), "who": "${env:HOME}"},
                        log_limit=2000)  # fmt: skip
    info = engine.task(run_id, "t")
    assert info.status == COMPLETED
    out = Path(info.stdout_log).read_text()
    # a field's value is never resolved as a secret; the author's reference is (the task
    # got it: here it is reversed), and its value is hidden in the log
    assert out.startswith(f"{tmp_path}\nhello ${{env:HOME}}\neulav-terc3s ***\nzzz")
    assert "log capped at 2000 bytes" in out
    assert len(out.encode()) < 2200
    assert Path(info.stderr_log).read_text() == "to stderr"


def test_resource_usage_is_recorded(engine: Engine) -> None:
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"
    run_id = engine.run({"tasks": [{"name": "burn", "executor": "shell",
                                    "command": [PY, "-c", burn]}]})  # fmt: skip
    info = engine.task(run_id, "burn")
    cpu = info.cpu_user + info.cpu_sys
    assert cpu >= 0.29  # the task's own CPU time, as process_time() counts it
    assert info.wall >= cpu * 0.9
    assert info.max_rss > 1024 * 1024


def test_a_task_that_cannot_start_fails_without_retrying(engine: Engine) -> None:
    run_id = engine.run({"tasks": [
        {"name": "t", "executor": "shell", "command": ["/nonexistent/prog"],
         "retry": {"max": 3, "backoff": "0.01s"}},
        {"name": "u", "executor": "nosuch", "command": ["true"]},
    ]})  # fmt: skip
    t, u = engine.task(run_id, "t"), engine.task(run_id, "u")
    assert (t.status, t.error_code, t.attempt) == (FAILED, "spawn", 1)
    assert (u.status, u.error_code) == (FAILED, "config")
    assert "unknown executor 'nosuch'" in u.error
    assert engine.store.run(run_id).status == FAILED


def test_downstream_of_a_failure_is_cancelled_and_other_branches_run(engine: Engine) -> None:
    run_id = engine.run({"tasks": [
        {"name": "bad", "executor": "shell", "command": ["false"]},
        {"name": "child", "executor": "shell", "command": ["true"], "depends_on": ["bad"]},
        {"name": "grandchild", "executor": "shell", "command": ["true"], "depends_on": ["child"]},
        {"name": "other", "executor": "shell", "command": ["true"]},
    ]})  # fmt: skip
    assert engine.task(run_id, "other").status == COMPLETED
    for name in ("child", "grandchild"):
        info = engine.task(run_id, name)
        assert (info.status, info.error_code, info.attempt) == (CANCELLED, "upstream_failed", 0)
    run = engine.store.run(run_id)
    assert run.status == FAILED and run.error == "task 'bad': exited with status 1"


def test_a_missing_template_field_fails_the_task_clearly(engine: Engine) -> None:
    run_id = engine.run({"tasks": [{"name": "t", "executor": "shell",
                                    "command": ["echo", "{path}"]}]})  # fmt: skip
    info = engine.task(run_id, "t")
    assert (info.status, info.error_code) == (FAILED, "config")
    assert "unknown field {path}" in info.error


def test_limits_hold_across_runs_of_the_same_workflow(engine: Engine, tmp_path: Path) -> None:
    marker = tmp_path / "marks"
    definition = {"parallelism": 1, "tasks": [mark_task("{who}", marker, 0.2)]}
    ids = [engine.submit(definition, {"who": f"run{i}"}) for i in range(3)]
    results = engine.runner(max_workers=4).execute(ids)
    assert results == dict.fromkeys(ids, COMPLETED)
    m = marks(marker)
    assert max_overlap([(v["start"], v["end"]) for v in m.values()]) == 1


HOG = """
import time
chunks = []
for _ in range(100):
    chunks.append(bytearray(10 * 1024 * 1024))  # 10 MiB, touched: resident
    time.sleep(0.02)
"""


def test_a_memory_hog_is_killed_and_the_failure_says_memory_limit(
    engine: Engine, tmp_path: Path
) -> None:
    started = time.monotonic()
    run_id = engine.run({"tasks": [
        {"name": "hog", "executor": "shell", "command": [PY, script(tmp_path, HOG)],
         "resources": {"memory": "80Mi"}, "retry": {"max": 2, "backoff": "0.01s"}},
        {"name": "modest", "executor": "shell", "command": [PY, "-c", "x = bytearray(10**6)"],
         "resources": {"memory": "80Mi"}},
    ]})  # fmt: skip
    assert time.monotonic() - started < 10
    hog = engine.task(run_id, "hog")
    assert (hog.status, hog.error_code, hog.attempt) == (FAILED, "memory", 1)  # not retried
    assert hog.error.startswith("memory limit 80.0MiB exceeded (RSS ")
    assert 80 * 1024**2 < hog.max_rss < 600 * 1024**2  # stopped long before its 1 GiB
    assert engine.task(run_id, "modest").status == COMPLETED


def test_cpu_slots_bound_what_runs_together(engine: Engine, tmp_path: Path) -> None:
    marker = tmp_path / "marks"
    tasks = [mark_task(n, marker, 0.3) for n in ("one", "two", "three")]
    for task in tasks:
        task["resources"] = {"cpu": 1}
    after = ["one", "two", "three"]
    # big wants more than there is: it runs, holding every slot; free declares no cpu,
    # so it runs beside it (both wait for the other's start: 5 starts in all)
    tasks.append({**mark_task("big", marker, 0.1, after, starts=5), "resources": {"cpu": 4}})
    tasks.append(mark_task("free", marker, 0.1, after, starts=5))
    run_id = engine.run({"tasks": tasks}, max_workers=8, cpu_slots=2)
    assert engine.store.run(run_id).status == COMPLETED
    m = marks(marker)
    spans = {name: (v["start"], v["end"]) for name, v in m.items()}
    assert max_overlap([spans[n] for n in ("one", "two", "three")]) == 2
    assert max_overlap([spans["big"], spans["free"]]) == 2


def test_held_lists_the_runs_a_runner_executes_and_which_are_paused(
    engine: Engine, tmp_path: Path
) -> None:
    """What the daemon asks its runner between steps (before: its private `_runs`)."""
    release = tmp_path / "release"
    wait = "import os, sys, time\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.01)"
    gated = {"tasks": [
        {"name": "a", "executor": "shell", "command": [PY, "-c", wait, str(release)]},
        {"name": "b", "executor": "shell", "command": ["true"], "depends_on": ["a"]},
    ]}  # fmt: skip
    first, second = engine.submit(gated), engine.submit(gated)
    runner = engine.runner()
    seen: list[dict[int, bool]] = []

    def adopt() -> list[int]:
        held = runner.held()
        seen.append(held)
        if len(seen) == 2:  # a step later: both runs' task a is running (until released)
            assert held == {first: False, second: False}
            runner.pause(second)  # its running task finishes, then the runner lets it go
        elif len(seen) == 3:
            release.touch()
        return []

    assert runner.execute([first, second], adopt=adopt, poll=0.05) == {
        first: COMPLETED, second: "PAUSED"}  # fmt: skip
    assert seen[2] == {first: False, second: True}
    assert runner.held() == {}


class _Raises(Executor):
    """A buggy thread executor: `execute` raises."""

    def execute(self, context: TaskContext) -> TaskResult:
        raise RuntimeError("bug in execute")


class _CommandRaises(ProcessExecutor):
    """A buggy process executor: building the command raises."""

    def command(self, context: TaskContext) -> Command | TaskResult:
        raise KeyError("bug in command")


class _FinishRaises(ProcessExecutor):
    """A process executor whose process runs, then reading its result raises."""

    def command(self, context: TaskContext) -> Command | TaskResult:
        return Command(["true"], {})

    def finish(self, result: TaskResult, context: TaskContext) -> TaskResult:
        raise ValueError("bug in finish")


def test_an_executor_that_raises_fails_its_attempt_not_the_runner(engine: Engine) -> None:
    """Wherever the executor raises (execute, command, finish): error code `executor`,
    retried like any failure, and the other tasks of the run go on."""
    executors = {**engine.executors, "raises": _Raises, "command_raises": _CommandRaises,
                 "finish_raises": _FinishRaises}  # fmt: skip
    retry = {"max": 1, "backoff": "0.01s"}
    tasks = [{"name": name, "executor": name, "retry": retry}
             for name in ("raises", "command_raises", "finish_raises")]  # fmt: skip
    tasks.append({"name": "fine", "executor": "shell", "command": ["true"]})
    run_id = engine.submit({"tasks": tasks})
    runner = Runner(engine.db, executors, logs_dir=engine.tmp / "logs", kill_grace=0.2)
    assert runner.execute([run_id]) == {run_id: FAILED}
    errors = {"raises": "RuntimeError: bug in execute",
              "command_raises": "KeyError: 'bug in command'",
              "finish_raises": "ValueError: bug in finish"}  # fmt: skip
    for name, message in errors.items():
        task = engine.task(run_id, name)
        assert (task.status, task.error_code, task.error, task.attempt) == (
            FAILED, "executor", message, 2)  # fmt: skip
        assert task.recoverable is True
    assert engine.task(run_id, "fine").status == COMPLETED
    assert engine.task(run_id, "finish_raises").pid is not None  # its process did run
