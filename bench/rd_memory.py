"""Peak RSS of the codec CLI path on a 4000x3000 photo, in fresh processes that cannot import TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

# Peak RSS is VmHWM of the child's own address space: getrusage's ru_maxrss
# survives execve on Linux and would report the (TensorFlow-sized) parent.
_MEMORY_CHILD = """
import sys, time
for name in ("tensorflow", "keras", "tf_keras"):
    sys.modules[name] = None  # a device: TensorFlow cannot be imported
def hwm_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
from vqvae_tf import codec
mode, model, source, target = sys.argv[1:]
before = hwm_kib()
start = time.perf_counter()
if mode == "compress":
    codec.compress(source, target, model)
else:
    codec.decompress(source, target, model)
print(before, hwm_kib(), time.perf_counter() - start)
"""


def peak_memory(root: Path, photo: np.ndarray) -> dict:
    from PIL import Image

    from vqvae_tf import codec

    name = codec.DEFAULT_MODEL
    env = dict(os.environ, PYTHONPATH=str(root), TF_CPP_MIN_LOG_LEVEL="2")
    entry = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = tmp / "big_4000x3000.png"
        Image.fromarray(photo).resize((4000, 3000), Image.BICUBIC).save(source)
        for mode, src, dst in (
            ("compress", source, tmp / f"{name}.vqz"),
            ("decompress", tmp / f"{name}.vqz", tmp / f"{name}.png"),
        ):
            done = subprocess.run(
                [sys.executable, "-c", _MEMORY_CHILD, mode, name, str(src), str(dst)],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            before, peak, seconds = done.stdout.split()
            entry[mode] = dict(
                peak_rss_mib=int(peak) / 1024, rss_after_imports_mib=int(before) / 1024, seconds=float(seconds)
            )
    print(
        f"4000x3000 {name}: compress peak RSS {entry['compress']['peak_rss_mib']:.0f} MiB "
        f"({entry['compress']['seconds']:.1f} s), decompress {entry['decompress']['peak_rss_mib']:.0f} MiB "
        f"({entry['decompress']['seconds']:.1f} s)",
        flush=True,
    )
    return dict(image="the speed photo resized to 4000x3000 (PNG)", model=name, **entry)
