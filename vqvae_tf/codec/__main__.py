"""`python -m vqvae_tf.codec ...`: the codec's command line (see `vqvae_tf.codec.cli`).

This entry point is the one place that joins the device commands with the
two packaging commands of the training side; it imports the latter only when
one of them is asked for.
"""

import sys

from vqvae_tf.codec import cli


def main():
    commands = cli.COMMANDS
    if len(sys.argv) > 1 and sys.argv[1] in cli.PACKAGING_COMMANDS:
        from vqvae_tf.export import codec_cli

        commands = commands | codec_cli.COMMANDS
    cli.main(commands)


if __name__ == "__main__":
    main()
