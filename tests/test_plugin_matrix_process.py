"""The plugin matrix, set-up code that must run once per worker process (docs/how-it-works.rst,
"The process model"): a Django project configured by its conftest, as pytest-django documents
for projects without a settings module, gives the serial run's outcomes on two workers.

Each test runs one small suite plainly and on two workers (forked or spawned, see
``matrix.METHODS``) and compares them with ``matrix.run_pair``: exit code, summary counts,
short test summary and each test's outcome and message.
"""

from __future__ import annotations

import pytest
from matrix import DJANGO_SETTINGS, METHODS, PLUGINS_ALONE, load, read_json_files, run_pair

pytestmark = PLUGINS_ALONE

# settings.configure() raises when called twice in one process: a worker that configured
# again on top of a copy of the configured controller could not start.
CONFIGURING_CONFTEST = """
from django.conf import settings

import project_settings  # the module, not named where pytest-django would look for it


def pytest_configure(config):
    names = [name for name in dir(project_settings) if name.isupper()]
    settings.configure(**{name: getattr(project_settings, name) for name in names})
"""

ORM_TESTS = """
import json
import os

import pytest
from django.contrib.auth.models import User
from django.db import connection


@pytest.mark.parametrize("i", range(6))
def test_user(i, db):
    User.objects.create(username=f"user{i}")
    assert User.objects.count() == 1  # each test alone in its transaction, in its database
    worker = os.environ.get("PYTEST_XDIST_WORKER", "serial")
    with open(f"db-{i}.json", "w") as out:
        json.dump({"worker": worker, "name": connection.settings_dict["NAME"]}, out)


def test_missing_user(db):
    assert User.objects.filter(username="nobody").first() is None
"""


@pytest.mark.parametrize("method", METHODS)
def test_django_configured_by_a_conftest(pytester: pytest.Pytester, method: str) -> None:
    pytest.importorskip("pytest_django")
    pytester.makeconftest(CONFIGURING_CONFTEST)
    pytester.makepyfile(project_settings=DJANGO_SETTINGS, test_orm=ORM_TESTS)
    run_pair(pytester, method, "-p", "no:cacheprovider", plugins=load("pytest_django.plugin"))
    if method == "xdist":
        return
    databases = read_json_files(pytester.path, "db-*.json")
    assert len(databases) == 6
    # one test database per worker, named after it as pytest-django names xdist's
    by_worker = {entry["worker"]: entry["name"] for entry in databases.values()}
    assert all(worker in name for worker, name in by_worker.items()), by_worker
    assert len(set(by_worker.values())) == len(by_worker)
