"""The one registry of public layers that cross-cutting tests sweep.

Each entry: (layer class, init kwargs, input shape, output shape, number of
trainable weights, number of non-trainable weights). A new public layer is
added here, and the serialization, jit and distribution sweeps pick it up.
"""

from vqvae_tf.models.networks import Decoder, Encoder, ResidualBlock
from vqvae_tf.quantizers.ema import VectorQuantizerEMA
from vqvae_tf.quantizers.fsq import FiniteScalarQuantizer
from vqvae_tf.quantizers.gumbel import GumbelQuantizer
from vqvae_tf.quantizers.residual import ResidualVectorQuantizer
from vqvae_tf.quantizers.vector_quantizer import VectorQuantizer

LAYERS = [
    (VectorQuantizer, dict(num_codes=16, code_dim=4, seed=1), (3, 5, 5, 4), (3, 5, 5, 4), 1, 3),
    (
        VectorQuantizer,
        dict(num_codes=16, code_dim=4, l2_normalize=True, dead_code_threshold=0.5, seed=2),
        (3, 7, 4),
        (3, 7, 4),
        1,
        3,
    ),
    (VectorQuantizerEMA, dict(num_codes=16, code_dim=4, decay=0.9, seed=3), (3, 5, 5, 4), (3, 5, 5, 4), 0, 6),
    # Low-dimensional codes add two affine maps; the rotation trick adds no weight.
    (
        VectorQuantizer,
        dict(num_codes=16, code_dim=4, lookup_dim=2, rotation_trick=True, seed=4),
        (3, 5, 5, 4),
        (3, 5, 5, 4),
        5,
        3,
    ),
    (
        VectorQuantizerEMA,
        dict(num_codes=16, code_dim=6, lookup_dim=3, rotation_trick=True, l2_normalize=True, seed=5),
        (3, 4, 6),
        (3, 4, 6),
        4,
        6,
    ),
    (ResidualVectorQuantizer, dict(num_codes=8, code_dim=4, num_stages=3, seed=6), (3, 5, 5, 4), (3, 5, 5, 4), 0, 18),
    # One projection pair around the whole stack, not one per stage.
    (
        ResidualVectorQuantizer,
        dict(num_codes=8, code_dim=6, num_stages=2, lookup_dim=3, seed=10),
        (3, 5, 6),
        (3, 5, 6),
        4,
        12,
    ),
    (
        ResidualVectorQuantizer,
        dict(
            num_codes=8,
            code_dim=4,
            num_stages=2,
            shared_codebook=True,
            stage_quantizer="vq",
            quantizer_dropout=0.5,
            rotation_trick=True,
            seed=7,
        ),
        (3, 7, 4),
        (3, 7, 4),
        1,
        3,
    ),
    (FiniteScalarQuantizer, dict(levels=[5, 4, 3]), (3, 5, 5, 3), (3, 5, 5, 3), 0, 0),
    (FiniteScalarQuantizer, dict(levels=[4, 4], code_dim=6, seed=8), (3, 7, 6), (3, 7, 6), 4, 0),
    (GumbelQuantizer, dict(num_codes=8, code_dim=4, hard=True, seed=9), (3, 5, 5, 4), (3, 5, 5, 4), 3, 2),
    (GumbelQuantizer, dict(num_codes=8, code_dim=4, temperature=0.5, kl_weight=0.1), (3, 7, 4), (3, 7, 4), 3, 2),
    (ResidualBlock, dict(filters=6, residual_units=3), (2, 8, 8, 6), (2, 8, 8, 6), 4, 0),
    (ResidualBlock, dict(filters=6, residual_units=3, rank=1), (2, 8, 6), (2, 8, 6), 4, 0),
    (
        Encoder,
        dict(downsample=4, hidden_units=8, residual_units=4, num_residual_blocks=1, code_dim=5),
        (2, 16, 16, 3),
        (2, 4, 4, 5),
        12,
        0,
    ),
    (
        Decoder,
        dict(downsample=2, hidden_units=8, residual_units=4, num_residual_blocks=2, output_channels=1, rank=1),
        (2, 6, 5),
        (2, 12, 1),
        12,
        0,
    ),
]


def layer_id(entry):
    cls, kwargs = entry[0], entry[1]
    return cls.__name__ + "-" + "-".join(f"{k}={v}" for k, v in sorted(kwargs.items()))
