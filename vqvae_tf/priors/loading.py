"""Loading a saved prior (`prior.keras`) with every prior class registered."""

from pathlib import Path


def load_prior(path):
    """Loads a `prior.keras` (registering the prior classes first).

    Raises:
        FileNotFoundError: `path` does not exist.
    """
    from vqvae_tf.priors import pixelcnn, transformer  # noqa: F401  (Keras registration)
    from vqvae_tf.utils.keras_files import load_keras_file

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: train a prior first (train.py --stage=prior).")
    return load_keras_file(path, what="prior")
