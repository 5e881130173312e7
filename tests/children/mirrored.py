"""Child process: every stateful quantizer under MirroredStrategy, for tests/quantizers/test_mirrored.py.

Logical devices must be configured before TensorFlow initialises, so this
runs in its own process; importing the two case modules sets up two logical
CPUs (each module does it at import, before TensorFlow starts) and one
process then runs both, printing one JSON report.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mirrored_quantizer_family  # noqa: E402
import mirrored_quantizers  # noqa: E402

if __name__ == "__main__":
    import tensorflow as tf

    one = tf.distribute.OneDeviceStrategy("/cpu:0")
    two = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    report = {
        "quantizers": mirrored_quantizers.report(one, two),
        "family": mirrored_quantizer_family.report(one, two),
    }
    print("REPORT " + json.dumps(report))
