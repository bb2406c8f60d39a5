import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bangertest import Daemon  # noqa: E402


@pytest.fixture
def daemon(tmp_path):
    """A running bangerd (fake driver) with its own --root; stopped afterwards."""
    d = Daemon(tmp_path / "root").start()
    yield d
    d.stop()
    d.check_log()


@pytest.fixture
def make_daemon(tmp_path):
    """Factory for tests that start, crash and restart daemons themselves."""
    made = []

    def make(**kw):
        d = Daemon(tmp_path / "root", **kw)
        made.append(d)
        return d
    yield make
    for d in made:
        d.kill9()
        d.check_log()
