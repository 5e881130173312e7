"""Loading a saved prior (`prior.keras`) with every prior class registered."""

from pathlib import Path


def load_prior(path):
    """Loads a `prior.keras` (registering the prior classes first).

    Raises:
        FileNotFoundError: `path` does not exist.
    """
    import keras

    from vqvae_tf.priors import pixelcnn, transformer  # noqa: F401  (Keras registration)

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: train a prior first (train.py --stage=prior).")
    return keras.models.load_model(path)
