"""An image reader for ProcessSource tests, importable by name in the spawned acquisition child.

Not a test module (no ``test_`` prefix). ``read_or_hang`` reads images like vinspect.dataset
does, except that once the file named by ``$PROCESS_TEST_HANG_FILE`` exists and holds N, the
(N+1)-th image read in that process deletes the file and never returns: a fetch that hangs
forever, once (the respawned child reads normally).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from vinspect.dataset import read_image

HANG_ENV = "PROCESS_TEST_HANG_FILE"
_reads = 0


def read_or_hang(path: Path) -> npt.NDArray[np.uint8]:
    global _reads
    _reads += 1
    marker = Path(os.environ.get(HANG_ENV, "/nonexistent"))
    if marker.is_file() and _reads > int(marker.read_text()):
        marker.unlink()
        while True:  # a fetch that never returns; only SIGKILL ends it
            time.sleep(3600)
    return read_image(path)
