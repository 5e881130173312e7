"""`AudioFormat`: what an audio `.vqz` stream records about the original signal."""

from __future__ import annotations

import dataclasses

__all__ = ["AudioFormat"]


@dataclasses.dataclass(frozen=True)
class AudioFormat:
    """What an audio stream records about the original signal.

    Attributes:
        sample_rate: the original sample rate in Hz (the decoder resamples
            back to it), 1 <= rate < 2**32.
        num_samples: the original number of samples per channel, >= 1.
        channels: channels coded (1: the codec mixes to mono). Defaults to 1.
        source_channels: channels of the original file, kept for
            information. Defaults to 1.

    Example:

    >>> AudioFormat(sample_rate=16000, num_samples=24000).duration
    1.5
    """

    sample_rate: int
    num_samples: int
    channels: int = 1
    source_channels: int = 1

    @property
    def duration(self) -> float:
        """Seconds of audio."""
        return self.num_samples / self.sample_rate
