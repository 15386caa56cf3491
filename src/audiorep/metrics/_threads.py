"""Thread policy for the small dense kernels of the metric code."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch

# Symmetric eigensolvers and SVDs of matrices below this size run on one thread. They are long
# sequences of level-2 steps whose thread barriers cost more than they save: on this project's
# shared 2-core machine, two threads made eigvalsh(2048) 6x and eigh(2048) up to 20x slower
# than one thread whenever another process was running (and gained nothing when it was quiet).
SINGLE_THREAD_BELOW = 4096
# Cholesky, QR and matrix products below this size run on one thread (a threaded call costs
# more than it saves there); larger ones, and the covariance syrk, use all threads.
SMALL_PRODUCT_BELOW = 1024


# torch.set_num_threads is process-wide: one lock keeps concurrent callers (several Python
# threads computing metrics) from restoring each other's setting out of order.
_LOCK = threading.RLock()


@contextlib.contextmanager
def lapack_threads(k: int, below: int = SINGLE_THREAD_BELOW) -> Iterator[None]:
    """Run the enclosed torch linear algebra single-threaded when ``k < below``.

    The default suits the eigensolvers; Cholesky, QR and products pass
    ``below=SMALL_PRODUCT_BELOW``. The torch thread count is restored afterwards.
    """
    if k >= below or torch.get_num_threads() == 1:
        yield
        return
    with _LOCK:
        n = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(n)
