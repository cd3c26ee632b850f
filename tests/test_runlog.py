"""runlog: what the libraries print lands in the run's log.txt, whatever channel they use; tradeoff's own lines
still reach the terminal. Run in a subprocess, which owns its file descriptors (pytest captures the test's own)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent('''
    import os, sys, tempfile
    from pathlib import Path
    import torch
    from onnx import TensorProto, helper
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from tradeoff.runlog import library_output_to, terminal

    # A graph without weights, pre-processed the way tradeoff falls back to when symbolic shape inference gives up:
    # ONNX Runtime logs "Model Optimization Failed!" and a traceback, then carries on, as in runs that succeeded.
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    with library_output_to(Path(sys.argv[1]), "test run"):
        print("trial 0: ours", file=terminal(), flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            quant_pre_process(helper.make_model(graph), os.path.join(tmp, "p.onnx"), skip_symbolic_shape=True)
        torch.ones(2).storage()  # torch warns that TypedStorage is deprecated
        print("a library's print")
        os.write(2, b"a C++ write to stderr\\n")
    print("after the run")
''')


def test_library_output_goes_to_the_log_and_tradeoffs_own_to_the_terminal(tmp_path: Path) -> None:
    log = tmp_path / "runs" / "demo" / "log.txt"
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(log)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "trial 0: ours\nafter the run\n" and done.stderr == ""
    written = log.read_text()
    assert written.lstrip().startswith("=== test run, ")
    for line in ("Model Optimization Failed!", "Traceback", "TypedStorage is deprecated", "a library's print",
                 "a C++ write to stderr"):
        assert line in written
