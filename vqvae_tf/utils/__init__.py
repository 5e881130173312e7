"""Small shared utilities: atomic file output, argument checks, PNG grids, WAV files, fingerprints.

Nothing here imports TensorFlow at module level except `distributed_ops`
(replica-aware TensorFlow ops), so the device side may use the rest.
"""
