"""`DatasetError`: the one exception of `vqvae_tf.data` (no TensorFlow, no numpy)."""


class DatasetError(ValueError):
    """A dataset spec, file or array that cannot be used; the message says why."""
