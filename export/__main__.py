"""`python -m export ...`: the exporters' command line (see `vqvae_tf.export.cli`)."""

from vqvae_tf.export import cli

if __name__ == "__main__":
    __doc__ = cli.__doc__  # absl's --help prints the main module's docstring
    cli.run()
