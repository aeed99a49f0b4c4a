"""The plugin matrix, plugins that change how tests run: ordering and dependencies, repetition,
mocking, async tests, environment variables and soft assertions give the serial run's
outcomes on two workers.

Each test runs one small suite plainly and on two workers (forked or spawned, see
``matrix.METHODS``) and compares them with ``matrix.run_pair``: exit code, summary counts,
short test summary and each test's outcome and message.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from harness import take_lines
from matrix import (
    METHODS,
    PLUGINS_ALONE,
    assert_same,
    failure_sections,
    load,
    run_pair,
)

pytestmark = PLUGINS_ALONE

RECORDER = """
import os

def record(name):
    with open("ran.log", "a") as log:
        log.write(f"{os.environ.get('PYTEST_XDIST_WORKER', 'serial')} {name}\\n")
"""


def recorded(path: Path) -> list[tuple[str, str]]:
    """``(worker, name)`` per line the inner tests appended to ``ran.log``; removes it."""
    lines = [tuple(line.split(" ", 1)) for line in take_lines(path / "ran.log")]
    return lines  # type: ignore[return-value]


# -- pytest-order --------------------------------------------------------------------------

ORDERED = """
import os

import pytest
from recorder import record

@pytest.mark.order(3)
def test_delete_account():
    record("delete")
    os.remove("account")  # created by test_create_account

@pytest.mark.order(1)
def test_create_account():
    record("create")
    open("account", "w").close()

@pytest.mark.order(2)
def test_login():
    record("login")
    assert os.path.exists("account")

@pytest.mark.order(after="test_delete_account")
def test_account_gone():
    record("gone")
    assert not os.path.exists("account")

@pytest.mark.parametrize("i", range(6))
def test_unrelated(i):
    record(f"unrelated-{i}")
"""


@pytest.mark.parametrize("method", METHODS)
def test_order_marks(pytester: pytest.Pytester, method: str) -> None:
    """Tests that rely on running in their marked order do so, one after the other on one
    worker: each depends on what the one before it left on disk."""
    pytest.importorskip("pytest_order")
    pytester.makepyfile(recorder=RECORDER, test_account=ORDERED)
    pair = run_pair(pytester, method, plugins=load("pytest_order.plugin"))
    assert pair.expected.parseoutcomes() == {"passed": 10}
    marked = [line for line in recorded(pytester.path) if not line[1].startswith("unrelated")]
    expected = [name for worker, name in marked if worker == "serial"]
    assert expected == ["create", "login", "delete", "gone"]
    ran = [(worker, name) for worker, name in marked if worker != "serial"]
    assert [name for _, name in ran] == expected
    assert len({worker for worker, _ in ran}) == 1, ran


# -- pytest-dependency ---------------------------------------------------------------------

DEPENDENT = """
import pytest

@pytest.mark.dependency()
def test_server_starts():
    pass

@pytest.mark.dependency()
def test_database_migrates():
    assert False, "migration 0042 failed"

@pytest.mark.dependency(depends=["test_server_starts"])
def test_homepage():
    pass

@pytest.mark.dependency(depends=["test_database_migrates"])
def test_orders_page():
    pass

@pytest.mark.dependency(depends=["test_server_starts", "test_homepage"])
def test_checkout():
    pass

@pytest.mark.parametrize("i", range(4))
def test_unrelated(i):
    pass
"""


@pytest.mark.parametrize("method", METHODS)
def test_dependency_marks(pytester: pytest.Pytester, method: str) -> None:
    """A test runs when the tests it depends on passed, and is skipped when one failed, as
    serially: not skipped because its dependency happened to run on another worker."""
    pytest.importorskip("pytest_dependency")
    pytester.makepyfile(test_site=DEPENDENT)
    pair = run_pair(pytester, method, "-rs", plugins=load("pytest_dependency"))
    assert pair.expected.parseoutcomes() == {"passed": 7, "failed": 1, "skipped": 1}


# -- pytest-repeat -------------------------------------------------------------------------

REPEATED = """
import pytest

def test_stable():
    pass

@pytest.mark.repeat(2)
def test_marked():
    pass

def test_fails_third_time(request):
    assert not request.node.name.endswith("[3-3]")

@pytest.mark.parametrize("x", ["a", "b"])
def test_param(x):
    pass
"""


@pytest.mark.parametrize("method", METHODS)
def test_repeat_count(pytester: pytest.Pytester, method: str) -> None:
    """``--count`` makes each test several, with the same ids and outcomes as serially."""
    pytest.importorskip("pytest_repeat")
    pytester.makepyfile(test_repeat=REPEATED)
    pair = run_pair(pytester, method, "--count", "3", plugins=load("pytest_repeat"))
    assert pair.expected.parseoutcomes() == {"passed": 13, "failed": 1}
    assert len(pair.tests) == 14


# -- pytest-mock ---------------------------------------------------------------------------

MOCKED = """
import os

import pytest

class Mailer:
    def send(self, to, body):
        raise RuntimeError("no network in tests")

def notify(mailer, users):
    for user in users:
        mailer.send(user, "hello")
    return len(users)

def test_patch_object(mocker):
    send = mocker.patch.object(Mailer, "send")
    assert notify(Mailer(), ["ada", "bob"]) == 2
    send.assert_any_call("bob", "hello")

def test_spy(mocker):
    spy = mocker.spy(os.path, "join")
    os.path.join("a", "b")
    assert spy.spy_return == "a/b"

def test_patch_dict(mocker):
    mocker.patch.dict(os.environ, {"MODE": "mocked"})
    assert os.environ["MODE"] == "mocked"

def test_stub(mocker):
    stub = mocker.stub(name="callback")
    stub(1)
    stub.assert_called_once_with(1)

def test_wrong_call(mocker):
    send = mocker.patch.object(Mailer, "send")
    notify(Mailer(), ["ada"])
    send.assert_called_once_with("ada", "bye")

def test_patches_are_undone():
    with pytest.raises(RuntimeError):
        Mailer().send("x", "y")
    assert "MODE" not in os.environ
"""
MOCK_ID = re.compile(r"id='\d+'")


def failure_lines(result: pytest.RunResult) -> dict[str, list[str]]:
    """The ``E`` lines of each failure's traceback, mock ids left out."""
    sections = failure_sections(result.outlines, lambda line: line.startswith("E "))
    return {name: [MOCK_ID.sub("id=?", line) for line in lines] for name, lines in sections.items()}


@pytest.mark.parametrize("method", METHODS)
def test_mocker_fixture(pytester: pytest.Pytester, method: str) -> None:
    """Patches are undone after each test, and a wrong call fails with pytest-mock's
    explanation, as serially."""
    pytest.importorskip("pytest_mock")
    pytester.makepyfile(test_mailer=MOCKED)
    pair = run_pair(pytester, method, plugins=load("pytest_mock"))
    assert pair.expected.parseoutcomes() == {"passed": 5, "failed": 1}
    expected = failure_lines(pair.expected)
    assert "E       pytest introspection follows:" in expected["test_wrong_call"]
    assert_same(expected, failure_lines(pair.result))


# -- anyio ---------------------------------------------------------------------------------

ANYIO_TESTS = """
import anyio
import pytest

pytestmark = pytest.mark.anyio

@pytest.fixture
def anyio_backend():
    return "asyncio"

@pytest.fixture
async def resource():
    await anyio.sleep(0)
    yield "ready"
    await anyio.sleep(0)

async def test_task_group():
    results = []

    async def work(n):
        await anyio.sleep(0)
        results.append(n)

    async with anyio.create_task_group() as group:
        for n in range(3):
            group.start_soon(work, n)
    assert sorted(results) == [0, 1, 2]

async def test_async_fixture(resource):
    assert resource == "ready"

async def test_memory_stream():
    send, receive = anyio.create_memory_object_stream(1)
    async with send, receive:
        await send.send("ping")
        assert await receive.receive() == "ping"

async def test_cancelled_by_scope():
    with anyio.move_on_after(0) as scope:
        await anyio.sleep_forever()
    assert scope.cancelled_caught

async def test_fails():
    await anyio.sleep(0)
    assert 1 + 1 == 3

def test_plain():
    pass
"""


@pytest.mark.parametrize("method", METHODS)
def test_anyio_tests(pytester: pytest.Pytester, method: str) -> None:
    pytest.importorskip("anyio")
    pytester.makepyfile(test_async=ANYIO_TESTS)
    pair = run_pair(pytester, method, plugins=load("anyio.pytest_plugin"))
    assert pair.expected.parseoutcomes() == {"passed": 5, "failed": 1}


# -- pytest-env ----------------------------------------------------------------------------

ENV_INI = """
[pytest]
env =
    APP_MODE=test
    D:APP_REGION=eu-west-1
    U:APP_SECRET
    APP_PATH=/srv/plugins:{APP_PATH}
"""

ENV_TESTS = """
import os

def test_set():
    assert os.environ["APP_MODE"] == "test"

def test_default():
    assert os.environ["APP_REGION"] == "eu-west-1"

def test_unset():
    assert "APP_SECRET" not in os.environ

def test_expanded_once():
    assert os.environ["APP_PATH"] == "/srv/plugins:/opt/base"

def test_fails():
    assert os.environ["APP_MODE"] == "production"
"""


@pytest.mark.parametrize("method", METHODS)
def test_env_settings(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    """Workers see the environment the ini file sets, including a value that refers to the
    variable's previous value, expanded once (not again in a worker that starts pytest
    anew and inherits the controller's environment)."""
    pytest.importorskip("pytest_env")
    monkeypatch.setenv("APP_PATH", "/opt/base")
    monkeypatch.setenv("APP_SECRET", "hunter2")
    monkeypatch.delenv("APP_REGION", raising=False)
    pytester.makeini(ENV_INI)
    pytester.makepyfile(test_env=ENV_TESTS)
    pair = run_pair(pytester, method, plugins=load("pytest_env.plugin"))
    assert pair.expected.parseoutcomes() == {"passed": 4, "failed": 1}


# -- pytest-check --------------------------------------------------------------------------

CHECKS = """
from pytest_check import check

def test_all_checks_pass():
    check.equal(1, 1)
    check.is_in("a", "abc")

def test_soft_failures():
    check.equal(1, 2)
    check.less(5, 3)
    with check:
        assert "x" == "y"

def test_soft_then_hard_failure():
    check.is_true(False, "flag must be set")
    assert False, "hard stop"

def test_check_raises():
    with check.raises(ZeroDivisionError):
        1 / 0
"""


def check_lines(result: pytest.RunResult) -> dict[str, list[str]]:
    """What pytest-check writes in each failure's section: each failed check, and the count."""
    return failure_sections(
        result.outlines, lambda line: line.startswith(("FAILURE: ", "Failed Checks"))
    )


@pytest.mark.parametrize("method", METHODS)
def test_soft_assertions(pytester: pytest.Pytester, method: str) -> None:
    """Every failed check of a test is reported, as serially. (Not compared: the failure's
    one-line reason, in the short summary and JUnit XML. In a worker, as under xdist,
    pytest-check does not set its own, so pytest shows the first line of the failure,
    "FAILURE: check 1 == 2", instead of "check 1 == 2".)"""
    pytest.importorskip("pytest_check")
    pytester.makepyfile(test_checks=CHECKS)
    pair = run_pair(
        pytester,
        method,
        plugins=load("pytest_check.plugin"),
        summary_line=lambda line: line.split(" - ")[0],
        messages=False,
    )
    assert pair.expected.parseoutcomes() == {"passed": 2, "failed": 2}
    expected, got = (check_lines(run) for run in (pair.expected, pair.result))
    assert expected["test_soft_failures"][-1] == "Failed Checks: 3"
    assert_same(expected, got)
