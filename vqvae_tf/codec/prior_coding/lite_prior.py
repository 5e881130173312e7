"""A prior exported to TFLite (`prior.tflite`), run with LiteRT and NumPy: the device side of the `prior` method.

The file holds two signatures (`vqvae_tf.export.prior_tflite` explains
them and why they are exact): `rows`, run once per map row (cached while
the rows above stay the same), and `position`, the logits of one position
for a batch of maps. Its sidecar is the codec model's `prior.json` (written
by `python -m vqvae_tf.codec add-prior`): the prior's fingerprint, map
size, codebook size and reach. No TensorFlow here.

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

__all__ = ["LitePrior", "open_signatures"]


def _crop(codes, top, left, rows, cols):
    """`codes[:, top : top + rows, left : left + cols]` of maps `(N, H, W)`, 0 outside the map."""
    out = np.zeros((codes.shape[0], rows, cols), np.int32)
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + rows, codes.shape[1]), min(left + cols, codes.shape[2])
    if r1 > r0 and c1 > c0:
        out[:, r0 - top : r1 - top, c0 - left : c1 - left] = codes[:, r0:r1, c0:c1]
    return out


def _inside(top, left, rows, cols, shape):
    """float32 `(rows, cols)`: 1 where the window position lies inside a map of `shape`."""
    r = np.arange(rows)[:, None] + top
    c = np.arange(cols)[None, :] + left
    return ((r >= 0) & (r < shape[0]) & (c >= 0) & (c < shape[1])).astype(np.float32)


def open_signatures(model, names, num_threads: int = 2):
    """dict `name -> SignatureRunner` of a TFLite prior (a path or its bytes), opened with LiteRT.

    Raises `FileNotFoundError` for a missing file, `ValueError` unless the
    model's signatures are exactly `names` (another kind of file).
    """
    from ai_edge_litert.interpreter import Interpreter

    check_int("num_threads", num_threads, minimum=1)
    if isinstance(model, (bytes, bytearray)):
        source = f"the TFLite model ({len(model)} bytes)"
        interpreter = Interpreter(model_content=bytes(model), num_threads=num_threads)
    else:
        source = str(model)
        if not Path(model).is_file():
            raise FileNotFoundError(f"TFLite prior {model} not found")
        interpreter = Interpreter(model_path=source, num_threads=num_threads)
    signatures = interpreter.get_signature_list()
    if set(signatures) != set(names):
        raise ValueError(f"{source} has signatures {sorted(signatures)}; expected {sorted(names)}")
    return {name: interpreter.get_signature_runner(name) for name in names}


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
        reach: `L * (kernel_size // 2)`: the rows above and columns on each
            side a position's logits read (`vqvae_tf.export.prior_tflite`).
    """

    num_classes = 0

    def __init__(self, path, num_threads: int = 2):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"TFLite prior {path} not found")
        sidecar = path.with_suffix(".json")
        try:
            meta = json.loads(sidecar.read_text())
            self.num_codes = int(meta["num_codes"])
            self.map_shape = tuple(int(s) for s in meta["map_shape"])
            self.fingerprint = bytes.fromhex(meta["fingerprint"])
            self.reach = int(meta["tflite"]["reach"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"{sidecar} must be the prior's sidecar with num_codes, map_shape, fingerprint and "
                f"tflite.reach (written by `python -m vqvae_tf.codec add-prior`): {error!r}"
            ) from None
        self.path = path
        self.model_id = meta.get("model_id")
        runners = open_signatures(path, ("rows", "position"), num_threads)
        self._rows, self._position = runners["rows"], runners["position"]
        self._cached_row = self._cached_above = self._vertical = None

    def _row_features(self, codes, row):
        """`rows` of `row`, padded with `reach` zero columns on the left; cached while the rows above stay."""
        above = codes[:, :row]
        if (
            self._cached_row == row
            and self._cached_above.shape == above.shape
            and np.array_equal(self._cached_above, above)
        ):
            return self._vertical
        reach, width = self.reach, self.map_shape[1]
        top, left, rows, cols = row - reach - 1, -reach - 1, reach + 2, width + 2 * reach + 1
        vertical = self._rows(
            codes=_crop(codes, top, left, rows, cols), mask=_inside(top, left, rows, cols, self.map_shape)
        )["vertical"]
        self._vertical = np.pad(vertical, [(0, 0), (0, 0), (reach, 0), (0, 0)])
        self._cached_row, self._cached_above = row, above.copy()
        return self._vertical

    def logits_at(self, codes, row, col):
        """float32 logits `(N, K)` at `(row, col)` of int32 maps `(N, H, W)`, from the codes before it."""
        reach = self.reach
        vertical = self._row_features(codes, row)
        left = col - reach - 1
        return self._position(
            codes=_crop(codes, row, left, 1, reach + 1)[:, 0],
            vertical=np.ascontiguousarray(vertical[:, :, col : col + reach + 1]),
            mask=_inside(row, left, 1, reach + 2, self.map_shape)[0],
        )["logits"]

    def __repr__(self):
        return f"LitePrior({str(self.path)!r})"
