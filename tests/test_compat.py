"""Files written before the package layout of issue 13 still load and decode.

The fixtures (`tests/fixtures/`, made by `make_compat_fixtures.py` on the old
layout) are checked in a fresh process, so nothing imported by another test
can register a class that `import vqvae_tf` alone would miss.
"""

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
KERAS_FIXTURES = 9
STREAM_FIXTURES = 4


@pytest.mark.slow
def test_old_keras_files_and_streams_load_in_a_fresh_process():
    result = subprocess.run(
        [sys.executable, str(HERE / "children" / "compat_child.py")], capture_output=True, text=True, timeout=300
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith(("OK ", "FAIL "))]
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    oks = [line for line in lines if line.startswith("OK ")]
    assert len([x for x in oks if x.endswith(".keras")]) == KERAS_FIXTURES, lines
    assert len([x for x in oks if x.endswith(".vqz")]) == STREAM_FIXTURES, lines
