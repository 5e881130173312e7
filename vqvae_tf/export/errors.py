"""The one exception type of the exporters."""


class ExportError(ValueError):
    """Bad export input (model file, format, quantization, data) or a failed check.

    A `ValueError`, so callers that validate arguments catch it as such; the
    CLI turns it into a one-line message and exit code 2.
    """
