import platform
import subprocess
import sys

import pytest

# Allocates and frees a 64 MB buffer (over glibc's largest mmap threshold) ten times; prints the page faults.
FAULTS = """
import resource, sys
from scratchdet.train.device import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
buffer = bytearray(64 << 20)
del buffer
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    buffer = bytearray(64 << 20)  # zero-filled: every page is touched
    del buffer
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> tuple[str, int]:
    output = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True).stdout
    kept, count = output.split()
    return kept, int(count)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt tuning is glibc only")
def test_keep_freed_memory_stops_the_per_allocation_page_faults():
    pages = (64 << 20) // 4096
    default_kept, default_faults = faults("default")
    kept, kept_faults = faults("keep")
    assert default_kept == "False" and default_faults >= 10 * pages * 0.9  # each buffer faulted in afresh
    assert kept == "True" and kept_faults < pages  # the freed pages are reused


LEAVE = """
import atexit, logging, sys
from scratchdet.train.device import leave_rank
logging.basicConfig(filename=sys.argv[1], level=logging.INFO)
logging.getLogger("rank").info("logged before leaving")
atexit.register(lambda: print("finalised", flush=True))
sys.stdout.write("printed without a newline")
leave_rank(3)
"""


def test_a_rank_leaves_with_its_code_and_output_but_without_finalising(tmp_path):
    # finalisation is where a gloo thread's late GIL acquire aborts a DDP rank: atexit handlers must not run
    log = tmp_path / "rank.log"
    result = subprocess.run([sys.executable, "-c", LEAVE, str(log)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr
    assert result.stdout == "printed without a newline"
    assert "logged before leaving" in log.read_text()
