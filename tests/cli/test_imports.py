"""What starting the ``conveyor`` command imports: ``conveyor worker`` starts often (a
supervisor's restarts, deploys, the benchmark's start-up), so the modules of commands
that print tables keep Rich out of the import until they print."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_importing_the_cli_imports_no_rich() -> None:
    # Given a fresh interpreter
    # When it imports the command and every command module
    code = (
        "import json, sys\n"
        "import conveyor.cli\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'rich')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    # Then no module of Rich is loaded
    assert json.loads(done.stdout) == []


def test_a_table_command_still_prints_with_rich(tmp_path: Path) -> None:
    # Given a store with one queue
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    run = [sys.executable, "-m", "conveyor"]
    subprocess.run([*run, "queues", "create", "emails", "--url", url], check=True, timeout=60)
    # When the queues are listed for humans
    done = subprocess.run(
        [*run, "queues", "list", "--url", url], capture_output=True, text=True, timeout=60
    )
    # Then the table names the queue and its status
    assert done.returncode == 0, done.stderr
    assert "emails" in done.stdout and "active" in done.stdout
