"""The ONNX parity check shared by the image and waveform export tests."""

import numpy as np


def assert_onnx_matches_keras(exported, inputs, codes, decoded, num_reconstructed):
    """The ONNX encoder, decoder and reconstruct graphs of `exported` against the Keras outputs.

    Args:
        exported: an `export_model` output directory with `onnx/`.
        inputs: the evaluation batch (images or waveforms); `codes` and
            `decoded` are the Keras model's codes of it and their decoding.
        num_reconstructed: how many of `inputs` go through `reconstruct`.
    """
    import onnxruntime

    def session(name):
        return onnxruntime.InferenceSession(str(exported / f"onnx/{name}.onnx"), providers=["CPUExecutionProvider"])

    got = session("encoder").run(["codes"], {"images": inputs})[0]
    assert got.dtype == np.int32 and np.mean(got == codes) >= 0.999
    out = session("decoder").run(["images"], {"codes": codes})[0]
    assert np.max(np.abs(out - decoded)) <= 1e-4
    n = num_reconstructed
    reconstruction = session("reconstruct").run(["reconstruction"], {"images": inputs[:n]})[0]
    # Equal to the decoder's output, unless a code near a tie flipped among these inputs.
    assert np.max(np.abs(reconstruction - out[:n])) <= 1e-4 or np.mean(got[:n] != codes[:n]) > 0
