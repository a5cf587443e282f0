"""LoadTest gives the heap earlier steps freed back before its server process adds its own."""

import ctypes

import psutil
import pytest

from components.load_test.server_process import return_freed_memory


@pytest.mark.skipif(
    getattr(ctypes.CDLL(None), "malloc_trim", None) is None, reason="not glibc: nothing to trim"
)
def test_freed_heap_leaves_the_processes_resident_memory() -> None:
    process = psutil.Process()
    # 2 KB objects come from malloc's heap (not pymalloc, not mmap); the pin allocated after
    # them keeps free() from trimming the heap's top by itself, as later allocations do in a run.
    blocks = [bytes(2048) for _ in range(100_000)]
    pin = bytes(2048)
    del blocks
    before = process.memory_info().rss
    return_freed_memory()
    after = process.memory_info().rss
    assert before - after > 100 * 2**20, (before, after)
    assert pin
