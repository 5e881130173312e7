"""Images (or speech clips) from a trained prior: sampled code maps decoded by the VQ-VAE.

`sample_images` serves both `train_prior` (the run's `samples.png`, or for
a speech run its `samples/prior_sample_k.wav`) and the sample command line
(`python -m vqvae_tf.training.sample`); the grid itself is written by
`vqvae_tf.utils.image_grid.save_image_grid`, the WAV files by
`vqvae_tf.training.speech_prior.write_sample_wavs`.
"""

from __future__ import annotations

import numpy as np

from vqvae_tf.priors.stage_tokens import tokens_to_stages


def sample_images(vqvae, prior, num_per_row, labels=None, temperature=1.0, top_k=0, seed=0):
    """Samples code maps from `prior` and decodes them with `vqvae`.

    Args:
        vqvae: the VQ-VAE whose codes the prior models.
        prior: a trained prior with a `map_shape`.
        num_per_row: samples per row (per class for a conditional prior).
        labels: class ids, one row each; None for an unconditional prior
            (one row). A conditional prior given None gets every class.
        temperature, top_k, seed: as in `AutoregressivePrior.sample`
            (`top_k=0` means no top-k).

    Returns:
        `(images, rows)`: float images `(rows * num_per_row, H, W, C)` in
        row-major order (for a speech VQ-VAE, clips `(rows * num_per_row,
        T * hop, 1)`), and the number of rows.
    """
    if prior.num_classes:
        labels = list(range(prior.num_classes)) if labels is None else [int(v) for v in labels]
        sample_labels = np.repeat(np.asarray(labels, np.int32), num_per_row)
        rows = len(labels)
    else:
        if labels is not None:
            raise ValueError("this prior is unconditional (num_classes=0); expected no labels.")
        sample_labels, rows = None, 1
    codes = prior.sample(
        rows * num_per_row, labels=sample_labels, temperature=temperature, top_k=top_k or None, seed=seed
    )
    stages = getattr(vqvae.quantizer, "code_shape", ())
    if stages:
        codes = tokens_to_stages(codes, vqvae.num_codes, stages[0])
    if getattr(vqvae, "rank", 2) == 1:
        codes = np.asarray(codes)[:, 0]  # a speech prior's 1-row maps are (T,) or (T, S) codes
    return np.asarray(vqvae.decode_codes(codes), np.float32), rows
