"""The networks and the autoencoders built from them: `VQVAE` and the continuous `GaussianVAE`."""

from vqvae_tf.models.gaussian_vae import GaussianVAE
from vqvae_tf.models.metrics import DeadCodes
from vqvae_tf.models.networks import Decoder, Encoder, ResidualBlock
from vqvae_tf.models.presets import list_presets
from vqvae_tf.models.vqvae import VQVAE

__all__ = ["VQVAE", "DeadCodes", "Decoder", "Encoder", "GaussianVAE", "ResidualBlock", "list_presets"]
