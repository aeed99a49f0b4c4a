"""Shared configuration of procpar's own test suite: markers, the environment every test's
inner runs start from (policy: the ``inner_runs`` marker, see ``tests/harness.py``), and the
gateways of remote workers."""

from __future__ import annotations

import getpass
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import clean_environment


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "stress: large inner runs (tens of thousands of tests); part of the normal run, "
        "deselect with -m 'not stress'",
    )
    config.addinivalue_line(
        "markers",
        "inner_runs(autoload_plugins=True, ci=None): the environment this module's or test's "
        "inner runs start from (tests/harness.py: clean_environment)",
    )


@pytest.fixture(autouse=True)
def inner_environment(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test's inner runs start from an environment cleaned of the outer run's (worker
    identity, ``-n auto`` overrides, ``PYTEST_ADDOPTS``), with the plugin autoload and CI
    policy of the closest ``inner_runs`` marker (by default: plugins autoload, CI as outside)."""
    marker = request.node.get_closest_marker("inner_runs")
    if marker is not None and marker.args:
        raise TypeError("inner_runs takes keyword arguments only")
    clean_environment(monkeypatch, **(marker.kwargs if marker is not None else {}))


@pytest.fixture
def remote_tmp(tmp_path: Path) -> Path:
    """The temporary directory (``TMPDIR``) of the socket server's workers."""
    path = tmp_path / "remote-tmp"
    path.mkdir()
    return path


@pytest.fixture
def socket_gateway(remote_tmp: Path) -> Iterator[str]:
    """An execnet socket server on 127.0.0.1, as ``--tx`` spec; it serves one run."""
    server = subprocess.Popen(
        [sys.executable, "-u", "-m", "execnet.script.socketserver", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "TMPDIR": str(remote_tmp)},
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()  # "... Entering Accept loop ('127.0.0.1', PORT)"
        found = re.search(r"'127\.0\.0\.1', (\d+)\)", line)
        assert found, line
        yield f"socket=127.0.0.1:{found.group(1)}"
    finally:
        server.kill()
        server.communicate()


SSHD_CONFIG = """\
ListenAddress 127.0.0.1
Port {port}
HostKey {home}/host_key
AuthorizedKeysFile {home}/authorized_keys
PidFile {home}/sshd.pid
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
"""

SSH_CONFIG = """\
Host procpar-loopback
  HostName 127.0.0.1
  Port {port}
  User {user}
  IdentityFile {home}/user_key
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  BatchMode yes
  LogLevel ERROR
"""


@pytest.fixture
def ssh_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private sshd on a loopback port, with throwaway keys, as ``--tx`` spec.

    Skipped where OpenSSH's server is not installed (CI installs it: .ci/run).
    """
    tools = {name: shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin")
             for name in ("sshd", "ssh", "ssh-keygen")}  # fmt: skip
    missing = [name for name, path in tools.items() if path is None]
    if missing:
        pytest.skip(f"ssh gateway: {', '.join(missing)} not installed (package openssh-server)")
    home = tmp_path_factory.mktemp("sshd")
    for key in ("host_key", "user_key"):
        subprocess.run(
            [tools["ssh-keygen"], "-q", "-t", "ed25519", "-N", "", "-f", str(home / key)],
            check=True,
        )
    shutil.copy(home / "user_key.pub", home / "authorized_keys")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (home / "sshd_config").write_text(SSHD_CONFIG.format(port=port, home=home))
    client_config = home / "ssh_config"
    user = getpass.getuser()
    client_config.write_text(SSH_CONFIG.format(port=port, home=home, user=user))
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", exist_ok=True)  # its privilege separation directory
    server = subprocess.Popen(
        [str(tools["sshd"]), "-D", "-e", "-f", str(home / "sshd_config")],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        line = server.stderr.readline()  # "Server listening on 127.0.0.1 port N." or why not
        if "listening" not in line:
            pytest.skip(f"ssh gateway: sshd did not start: {line.strip()}")
        yield f"ssh=procpar-loopback//ssh_config={client_config}//python={sys.executable}"
    finally:
        server.kill()
        server.communicate()
