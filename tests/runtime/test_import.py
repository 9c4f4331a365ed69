"""`import llm4seg.runtime` must work where torch and transformers cannot be imported."""

from __future__ import annotations

import subprocess
import sys

BLOCKER = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in ('torch', 'transformers', 'safetensors', 'gguf'):
            raise ImportError('blocked for this test: ' + name)
sys.meta_path.insert(0, Block())
import llm4seg.runtime
import llm4seg.runtime.doors.holoscan  # its operators (which import Holoscan) load on first use only
import llm4seg
assert 'torch' not in sys.modules, 'torch leaked in'
assert 'holoscan' not in sys.modules, 'holoscan leaked in'
try:
    import torch
except ImportError:
    print('BLOCKED-OK')
"""


def test_runtime_imports_without_torch_or_transformers():
    proc = subprocess.run([sys.executable, "-c", BLOCKER], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "BLOCKED-OK" in proc.stdout
