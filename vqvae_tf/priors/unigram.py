"""`UnigramPrior`: the context-free baseline an autoregressive prior must beat."""

import numpy as np
import tensorflow as tf

from vqvae_tf.priors.validation import validate_codes, validate_labels
from vqvae_tf.utils.checks import check_int, check_number


class UnigramPrior:
    """Per-position unigram model: `p(z_hw = k) = (n_hwk + a) / (N + K a)`.

    Counts each code at each map position over the training maps, with
    Laplace (add-`alpha`) smoothing; it ignores context, so it is the baseline
    an autoregressive prior must beat. Same NLL interface as the priors:
    `nll_per_code(unigram, codes)`.

    Args:
        num_codes: int >= 2, K.
        map_shape: `(H, W)`.
        alpha: float > 0, the smoothing pseudo-count. Defaults to 1.0.

    Example:

    ```python
    unigram = UnigramPrior(16, (8, 8)).fit(train_codes)
    nll_per_code(unigram, test_codes)  # nats per code
    ```
    """

    num_classes = 0

    def __init__(self, num_codes, map_shape, alpha=1.0):
        self.num_codes = check_int("num_codes", num_codes, minimum=2)
        self.map_shape = tuple(int(s) for s in map_shape)
        self.alpha = check_number("alpha", alpha, minimum=0, inclusive_min=False)
        self.counts = np.zeros(self.map_shape + (self.num_codes,), np.float64)

    def fit(self, codes):
        """Adds code maps to the counts.

        Args:
            codes: array `(N, H, W)`, or an iterable (e.g. `tf.data.Dataset`)
                of such batches or of `(codes, labels)` pairs.

        Returns:
            self.
        """
        batches = [codes] if isinstance(codes, np.ndarray) or tf.is_tensor(codes) else codes
        for batch in batches:
            if isinstance(batch, (tuple, list)):
                batch = batch[0]
            batch = validate_codes(batch, self.num_codes, self.map_shape).numpy()
            # Counts by bincount, not a one-hot sum: a one-hot batch is
            # N * H * W * K floats (gigabytes for speech tokens, K = S * 1024).
            flat = np.arange(batch[0].size).reshape(self.map_shape) * self.num_codes + batch
            self.counts += np.bincount(flat.ravel(), minlength=self.counts.size).reshape(self.counts.shape)
        return self

    def logits(self, codes, labels=None):
        """Log-probabilities `(B, H, W, K)` for codes `(B, H, W)`."""
        codes = validate_codes(codes, self.num_codes, self.map_shape)
        validate_labels(labels, 0)
        smoothed = self.counts + self.alpha
        log_p = np.log(smoothed / smoothed.sum(axis=-1, keepdims=True))
        return tf.broadcast_to(
            tf.constant(log_p, tf.float32),
            (codes.shape[0],) + self.map_shape + (self.num_codes,),
        )
