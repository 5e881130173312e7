"""A prior exported to TFLite (`prior.tflite`), run with LiteRT and NumPy: the device side of the `prior` method.

The file holds one signature, `logits`: the prior's logits at ONE position
of a batch of code maps, from the window of codes that position depends on
(`vqvae_tf.export.prior_tflite` explains the window and why it is exact).
Its sidecar is the codec model's `prior.json` (written by `python -m
vqvae_tf.codec add-prior`): the prior's fingerprint, map size, codebook
size and the window geometry. No TensorFlow here.

Example:

>>> prior = LitePrior("vqvae_tf/pretrained/d8k512/prior.tflite")
>>> prior.logits_at(codes, 3, 5).shape                  # codes (N, 8, 8)
(N, 512)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vqvae_tf.utils.checks import check_int

__all__ = ["LitePrior"]


class LitePrior:
    """The TFLite prior of a codec model.

    Args:
        path: `prior.tflite`, with the sidecar `prior.json` beside it.
        num_threads: interpreter threads. Defaults to 2.

    Attributes:
        num_codes: K. num_classes: 0 (the codec's priors are unconditional).
        map_shape: `(H, W)`, the map size the prior codes (its training
            crops' code maps). fingerprint: 8 bytes identifying the trained
            prior (the Keras prior's `prior_fingerprint`, recorded at export).
        window: `(rows, cols)` of the codes one call reads; target: the
            coded position's `(row, col)` in the window.
    """

    num_classes = 0

    def __init__(self, path, num_threads: int = 2):
        from ai_edge_litert.interpreter import Interpreter

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"TFLite prior {path} not found")
        sidecar = path.with_suffix(".json")
        try:
            meta = json.loads(sidecar.read_text())
            lite = meta["tflite"]
            self.num_codes = int(meta["num_codes"])
            self.map_shape = tuple(int(s) for s in meta["map_shape"])
            self.fingerprint = bytes.fromhex(meta["fingerprint"])
            self.window = tuple(int(s) for s in lite["window"])
            self.target = tuple(int(s) for s in lite["target"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"{sidecar} must be the prior's sidecar with num_codes, map_shape, fingerprint and "
                f"tflite.window/target (written by `python -m vqvae_tf.codec add-prior`): {error!r}"
            ) from None
        self.path = path
        self.model_id = meta.get("model_id")
        check_int("num_threads", num_threads, minimum=1)
        self._interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        inputs = {detail["name"]: detail for detail in self._interpreter.get_input_details()}
        if set(inputs) != {"codes", "mask"} or len(self._interpreter.get_output_details()) != 1:
            raise ValueError(f"{path} is not a prior's cone model: inputs {sorted(inputs)}, expected codes and mask")
        self._codes_index, self._mask_index = inputs["codes"]["index"], inputs["mask"]["index"]
        self._output_index = self._interpreter.get_output_details()[0]["index"]
        self._batch = None
        self._masks = {}

    def _mask(self, row, col):
        key = (row, col)
        if key not in self._masks:
            rows, cols = self.window
            r = np.arange(rows)[:, None] + row - self.target[0]
            c = np.arange(cols)[None, :] + col - self.target[1]
            inside = (r >= 0) & (r < self.map_shape[0]) & (c >= 0) & (c < self.map_shape[1])
            self._masks[key] = inside.astype(np.float32)
        return self._masks[key]

    def windows(self, codes, row, col):
        """The windows `(N, rows, cols)` int32 of position `(row, col)` of maps `(N, H, W)` (0 outside the map)."""
        rows, cols = self.window
        top, left = row - self.target[0], col - self.target[1]
        out = np.zeros((codes.shape[0], rows, cols), np.int32)
        r0, c0 = max(top, 0), max(left, 0)
        r1, c1 = min(top + rows, codes.shape[1]), min(left + cols, codes.shape[2])
        out[:, r0 - top : r1 - top, c0 - left : c1 - left] = codes[:, r0:r1, c0:c1]
        return out

    def logits_at(self, codes, row, col):
        """float32 logits `(N, K)` at `(row, col)` of int32 maps `(N, H, W)`, from the codes before it."""
        windows = self.windows(codes, row, col)
        if windows.shape[0] != self._batch:
            self._interpreter.resize_tensor_input(self._codes_index, windows.shape)
            self._interpreter.allocate_tensors()
            self._batch = windows.shape[0]
        self._interpreter.set_tensor(self._codes_index, windows)
        self._interpreter.set_tensor(self._mask_index, self._mask(row, col))
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output_index)

    def __repr__(self):
        return f"LitePrior({str(self.path)!r})"
