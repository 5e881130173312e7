"""The tiny VQVAE fit that both mirrored children run on one device and on two replicas.

Import it after the child has set up its logical devices (it imports
Keras, hence TensorFlow's devices, on import).
"""

import keras
import numpy as np

from vqvae_tf.models.vqvae import VQVAE


def run_model(kind, config, strategy, callbacks=(), *, num_codes, code_dim=4, global_batch=16):
    """Fits a tiny `VQVAE` (quantizer `kind`, `config`) for 4 steps under `strategy`.

    Returns:
        `(weights, history)`: every weight by path, as float64 lists, and the
        `fit` history.
    """
    keras.utils.set_random_seed(3)
    images = np.random.default_rng(2).random((global_batch * 2, 8, 8, 1)).astype("float32")
    with strategy.scope():
        model = VQVAE(
            name="vqvae",
            input_channels=1,
            downsample=2,
            hidden_units=8,
            residual_units=4,
            num_residual_blocks=1,
            num_codes=num_codes,
            code_dim=code_dim,
            quantizer=kind,
            quantizer_config=config,
        )
        model.compile(optimizer=keras.optimizers.SGD(0.1))
    history = model.fit(images, batch_size=global_batch, epochs=2, shuffle=False, verbose=0, callbacks=list(callbacks))
    return {w.path: np.asarray(w.numpy(), np.float64).tolist() for w in model.weights}, history.history
