"""Deprecated path of `python -m vqvae_tf.training.sample` (kept for one release)."""

from vqvae_tf._compat import warn_moved
from vqvae_tf.training.sample import main, run  # noqa: F401

if __name__ == "__main__":
    warn_moved("python -m vqvae_tf.sample", "python -m vqvae_tf.training.sample", stacklevel=2)
    main()
