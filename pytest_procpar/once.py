"""Fixtures set up once per run: in the controller, before any worker starts.

A session-scoped fixture runs once in every worker. For what must exist once for the whole
run (a database server, a built artefact, a port shared by all workers) decorate a generator
or function with :func:`once_per_run` in a conftest::

    @once_per_run
    def database_url(tmp_path_factory):
        server = start_server(tmp_path_factory.mktemp("db"))
        yield server.url
        server.stop()

With ``-n``, the controller sets it up before starting workers (only if a collected test uses
it), every worker's tests get the same value (inherited through fork; pickled for spawn and
forkserver), and the teardown runs after the last worker has finished. Without ``-n`` it is an
ordinary session fixture. The function may take ``config`` and ``tmp_path_factory``.
"""

from __future__ import annotations

import inspect
import traceback
from collections.abc import Callable, Generator, Sequence
from typing import Any, cast

import pytest

from pytest_procpar import pytest_internals, xdist_compat
from pytest_procpar.extension import RunPlan
from pytest_procpar.node import WorkerNode

WORKERINPUT_KEY = "procpar_run_values"
ALLOWED_ARGUMENTS = ("config", "tmp_path_factory")


class RunFixtureError(Exception):
    """A once-per-run fixture failed in the controller; tests that use it error."""


class RunFixture:
    """One once-per-run fixture: its function, and in the controller its value."""

    def __init__(self, func: Callable[..., Any], name: str) -> None:
        self.func = func
        self.name = name
        unknown = set(inspect.signature(func).parameters) - set(ALLOWED_ARGUMENTS)
        if unknown:
            raise TypeError(
                f"once_per_run fixture {name!r} may only take {', '.join(ALLOWED_ARGUMENTS)}; "
                f"got {', '.join(sorted(unknown))}"
            )
        self.value: Any = None
        self.error: str | None = None
        self.ready = False
        self._generator: Generator[Any, None, None] | None = None

    def _call(self, config: pytest.Config) -> Any:
        available: dict[str, Callable[[], Any]] = {
            "config": lambda: config,
            "tmp_path_factory": lambda: pytest_internals.tmp_path_factory(config),
        }
        wanted = inspect.signature(self.func).parameters
        return self.func(**{name: available[name]() for name in wanted})

    def setup(self, config: pytest.Config) -> None:
        try:
            result = self._call(config)
            if inspect.isgenerator(result):
                self._generator = cast(Generator[Any, None, None], result)
                result = next(result)
            self.value = result
        except Exception:
            self.error = f"once_per_run fixture {self.name!r} failed:\n{traceback.format_exc()}"
        self.ready = True

    def teardown(self) -> None:
        generator, self._generator = self._generator, None
        if generator is not None:
            try:
                next(generator)
            except StopIteration:
                pass
            else:
                raise RuntimeError(f"once_per_run fixture {self.name!r} yielded twice")

    def get(self, config: pytest.Config) -> Any:
        """The value (or the controller's error) as a test sees it."""
        if not self.ready:  # a spawned worker: the controller sent the value along
            values = (xdist_compat.workerinput(config) or {}).get(WORKERINPUT_KEY, {})
            if self.name not in values:
                raise RunFixtureError(f"once_per_run fixture {self.name!r} was not set up")
            self.error, self.value = values[self.name]
            self.ready = True
        if self.error is not None:
            raise RunFixtureError(self.error)
        return self.value


REGISTRY: dict[str, RunFixture] = {}


def once_per_run(func: Callable[..., Any]) -> Any:
    """Declare a fixture set up once for the whole run (see the module docstring)."""
    run_fixture = RunFixture(func, func.__name__)
    REGISTRY[run_fixture.name] = run_fixture

    @pytest.fixture(scope="session", name=run_fixture.name)
    def fixture(request: pytest.FixtureRequest) -> Generator[Any, None, None]:
        config = request.config
        if hasattr(config, "workerinput"):
            yield run_fixture.get(config)
            return
        run_fixture.setup(config)  # no workers: an ordinary session fixture
        try:
            yield run_fixture.get(config)
        finally:
            run_fixture.teardown()

    fixture.__doc__ = func.__doc__
    return fixture


class RunFixtures:
    """Registered in every parallel run's controller (``features.py``): sets up the
    once-per-run fixtures the collected tests use before any worker is handed a test, sends
    their values to every worker, and tears them down once the workers are gone."""

    def __init__(self) -> None:
        self.started: list[RunFixture] = []

    def pytest_procpar_run_planned(self, plan: RunPlan) -> None:
        self.started = set_up_for(plan.items, plan.config)

    def pytest_procpar_worker_starting(self, node: WorkerNode) -> None:
        node.workerinput[WORKERINPUT_KEY] = values_for_spawn(self.started)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self) -> Generator[None, object, object]:
        try:
            return (yield)
        finally:
            started, self.started = self.started, []
            tear_down(started)


def set_up_for(items: Sequence[pytest.Item], config: pytest.Config) -> list[RunFixture]:
    """In the controller: set up every once-per-run fixture a collected test uses."""
    used = {name for item in items for name in getattr(item, "fixturenames", ())}
    started = []
    for name, run_fixture in REGISTRY.items():
        if name in used:
            run_fixture.setup(config)
            started.append(run_fixture)
    return started


def values_for_spawn(started: Sequence[RunFixture]) -> dict[str, tuple[str | None, Any]]:
    return {fixture.name: (fixture.error, fixture.value) for fixture in started}


def tear_down(started: Sequence[RunFixture]) -> None:
    for run_fixture in reversed(started):
        run_fixture.teardown()
