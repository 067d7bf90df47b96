"""Process resources of the pipeline step: freed heap back to the OS, torch's thread count.

A scan allocates and frees a few hundred MB of numpy/torch temporaries. glibc keeps freed heap
pages (in every thread's arena) for reuse, so a pipeline process's resident memory ratchets up
to its worst fragmentation and stays there. `malloc_trim(0)` after a scan hands the free pages
back (a few milliseconds); where glibc is not the C library it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache

__all__ = ["limit_torch_threads", "release_free_memory"]


@cache
def _malloc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    name = ctypes.util.find_library("c")
    try:
        fn = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None
    if fn is not None:
        fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


def release_free_memory() -> bool:
    """Trim the C heap; True when glibc's `malloc_trim` ran and released memory."""
    fn = _malloc_trim()
    return bool(fn(0)) if fn is not None else False


def limit_torch_threads(n: int) -> None:
    """Use ``n`` torch threads (the pipeline resizes with torch): with several pipeline instances
    and the slice models on the same cores, torch's default of one thread per core in every
    process oversubscribes them."""
    if n < 1:
        raise ValueError(f"torch_threads must be >= 1, got {n}")
    import torch

    torch.set_num_threads(n)
