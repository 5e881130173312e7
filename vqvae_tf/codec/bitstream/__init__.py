"""The `.vqz` bitstream: integer code maps to bytes and back.

A VQ-VAE codec turns an image into a map of discrete codes (an int32 array of
shape `(h, w)`, or `(h, w, stages)` for residual quantizers) with values in
`[0, K)`. This module stores such a map in a small, self-checking binary
format and reads it back exactly. Methods 0 and 1 need no neural network
(nor TensorFlow); method 2 runs the prior it is given.

Format, version 1
-----------------
All integers are unsigned and little-endian. Offsets are in bytes.

| offset | size | field                | meaning                                         |
|-------:|-----:|----------------------|-------------------------------------------------|
|      0 |    4 | magic                | `b"VQZ1"`                                       |
|      4 |    1 | version              | format version, `1`                             |
|      5 |    1 | method               | payload coding method (see below)               |
|      6 |    2 | flags                | bit 0: the code map has a stage axis            |
|        |      |                      | (rank 3); other bits must be 0                  |
|      8 |   16 | model_id             | fingerprint of the model that made the codes    |
|     24 |    4 | image_height         | original image height, >= 1                     |
|     28 |    4 | image_width          | original image width, >= 1                      |
|     32 |    2 | image_channels       | original image channels, >= 1                   |
|     34 |    2 | stages               | quantizer stages, >= 1 (1 unless flag bit 0)    |
|     36 |    4 | code_height          | (padded) code-map height, >= 1                  |
|     40 |    4 | code_width           | (padded) code-map width, >= 1                   |
|     44 |    4 | num_codes            | codebook size K, 2 <= K <= 2**20                |
|     48 |    2 | params_length        | P, length of the method parameters              |
|     50 |    4 | payload_length       | N, length of the payload                        |
|     54 |    P | method parameters    | method-specific, see below                      |
| 54 + P |    N | payload              | the coded code map                              |
| 54+P+N |    4 | crc32                | `zlib.crc32` of every byte before it            |

The codes are serialised in C order of the code map: row by row, and within
a position all stages before the next position.

Methods:

* `0` packed: every code takes exactly `ceil(log2 K)` bits, most significant
  bit first, codes back to back; the last byte is padded with zero bits, so
  `N == ceil(h * w * stages * ceil(log2 K) / 8)`. `P == 0`.
* `1` static: an i.i.d. entropy code under a fixed per-model distribution
  over the K codes. The payload is the compressed word stream of
  `constriction.stream.stack.AnsCoder` (32-bit words, each stored
  little-endian, `N % 4 == 0`) for
  `constriction.stream.model.Categorical(probabilities, perfect=False)`;
  the codes are pushed with `encode_reverse`, so they decode in order.
  `P == 8`: the first 8 bytes of BLAKE2b of the normalised probabilities as
  little-endian float64, so a decoder holding another distribution fails
  with a clear error instead of producing wrong codes.
* `2` prior: each code is entropy coded under an autoregressive prior's
  conditional distribution given the codes before it
  (`vqvae_tf.codec.prior_coding`; decoding needs the prior, i.e. TensorFlow, and
  runs it position by position). Only maps without a stage axis. `P == 20`:

  | offset | size | field            | meaning                                      |
  |-------:|-----:|------------------|----------------------------------------------|
  |      0 |    8 | prior fingerprint| BLAKE2b of the prior's class, config, weights |
  |      8 |    2 | label            | class id, `0xFFFF` for an unconditional prior |
  |     10 |    2 | tile_height      | tile side in codes, >= 1                     |
  |     12 |    2 | tile_width       | tile side in codes, >= 1                     |
  |     14 |    2 | tiles_per_batch  | tiles run through the prior together, >= 1   |
  |     16 |    4 | codes_crc32      | `zlib.crc32` of the int32 codes (C order, LE) |

  The map is cut into `tile_height x tile_width` tiles in raster order,
  each coded on its own (tiles at the right and bottom edges are
  edge-padded; padding is not coded). Tiles are grouped by
  `tiles_per_batch`; group after group, positions in raster order of the
  tile, at each position the group's tiles in order: that is the order the
  codes pop from the payload, the compressed word stream of
  `constriction.stream.stack.AnsCoder` (32-bit little-endian words) with
  `constriction.stream.model.Categorical(perfect=False)` over the prior's
  softmax in float64. The fingerprint makes a decoder holding another prior
  fail clearly; the codes' CRC makes a prior that computes other
  probabilities (another machine or software stack) fail instead of
  returning wrong codes.
* `3`-`255`: unassigned.

New methods take a new method id and carry what they need in the method
parameters, so files written with earlier methods stay readable. A layout
change of the fixed header takes a new version number.

Decoding never trusts the header: every size is checked against the actual
data length and against caller-set limits before anything is allocated, and
every failure raises `BitstreamError` (a `ValueError`) with a one-line message.

Modules: `header` (constants, `Method`, `Header`, `read_header`,
`make_model_id`), `packing` (method 0), `static` (method 1, on the ANS
coder of `vqvae_tf.codec.entropy`), `stream` (`encode_stream`,
`decode_stream`, files); method 2 is `vqvae_tf.codec.prior_coding.tiled`.
"""

from vqvae_tf.codec.bitstream.header import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_SAMPLES,
    MAGIC,
    MAX_NUM_CODES,
    MODEL_ID_SIZE,
    READ_VERSIONS,
    VERSION,
    AudioFormat,
    BitstreamError,
    Header,
    Kind,
    Method,
    make_model_id,
    read_header,
)
from vqvae_tf.codec.bitstream.static import code_probabilities_from_counts
from vqvae_tf.codec.bitstream.stream import DecodedStream, decode_stream, encode_stream, read_file, write_file

__all__ = [
    "AudioFormat",
    "BitstreamError",
    "DecodedStream",
    "Header",
    "Kind",
    "Method",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_SAMPLES",
    "MAGIC",
    "MAX_NUM_CODES",
    "MODEL_ID_SIZE",
    "READ_VERSIONS",
    "VERSION",
    "code_probabilities_from_counts",
    "decode_stream",
    "encode_stream",
    "make_model_id",
    "read_file",
    "read_header",
    "write_file",
]
