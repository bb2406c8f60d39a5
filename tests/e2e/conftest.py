import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from assets import imported_root  # noqa: E402
from bangertest import Daemon  # noqa: E402


@pytest.fixture
def qemu_daemon(tmp_path):
    """A bangerd with the QEMU driver, the shared kernel and tiny image, in a
    network namespace of its own; stopped and cleaned up afterwards."""
    root = imported_root(tmp_path / "root")
    d = Daemon(root, driver="qemu", netns=True, resync=0.5)
    d.start()
    yield d
    d.stop()
    d.check_log()
    # VMs outlive bangerd by design: the test's ones must not outlive the test.
    from e2e_util import kill_guests
    kill_guests(root)
