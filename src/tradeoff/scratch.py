"""A throwaway working directory for ONNX Runtime's tools.

When its symbolic shape inference gives up (it does on TorchScript transformer exports), ONNX Runtime saves the
model, weights and all, as sym_shape_infer_temp.onnx plus a uuid-named .data file into the current directory:
90 MB per call for MiniLM, in the user's project. Every call that may run it goes through `scratch_directory`.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def scratch_directory() -> Iterator[None]:
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        yield
