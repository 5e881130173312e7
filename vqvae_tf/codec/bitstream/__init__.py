"""The `.vqz` bitstream: integer code maps to bytes and back.

A VQ-VAE codec turns a signal into a map of discrete codes with values in
`[0, K)`: an image into `(h, w)`, or `(h, w, n)` when a residual model
keeps its first `n` of S stages; audio into `(frames,)` or `(frames, n)`.
This module stores such a map in a small, self-checking binary format and
reads it back exactly. Methods 0 and 1 need no neural network (nor
TensorFlow); method 2 runs the prior it is given. docs/codec.md documents
the same layout with examples.

Format, version 2 (written)
---------------------------
All integers are unsigned and little-endian. Offsets are in bytes.

| offset | size | field          | meaning                                                  |
|-------:|-----:|----------------|----------------------------------------------------------|
|      0 |    4 | magic          | `b"VQZ1"`                                                |
|      4 |    1 | version        | `2`                                                      |
|      5 |    1 | method         | payload coding method (see below)                        |
|      6 |    1 | kind           | `0` image, `1` audio (`Kind`)                             |
|      7 |    1 | flags          | bit 0: stage axis; bit 1: variable depth; others 0       |
|      8 |   16 | model_id       | fingerprint of the model that made the codes             |
|     24 |    4 | num_codes      | codebook size K, 2 <= K <= 2**20                         |
|     28 |    2 | total_stages   | the model's stages S >= 1 (1 without flag bit 0)         |
|     30 |    2 | kept_stages    | stages stored, 1 <= n <= S (1 without flag bit 0)        |
|     32 |    4 | code_height    | image: code-map height; audio: code frames; >= 1         |
|     36 |    4 | code_width     | image: code-map width >= 1; audio: 0                     |
|     40 |    4 | signal_a       | image: height >= 1; audio: original sample rate (Hz)     |
|     44 |    4 | signal_b       | image: width >= 1; audio: original samples per channel   |
|     48 |    2 | signal_c       | image: channels >= 1; audio: channels coded (1: mono)    |
|     50 |    2 | signal_d       | image: 0 (reserved); audio: channels of the source file  |
|     52 |    2 | params_length  | P, length of the method parameters                       |
|     54 |    4 | payload_length | N, length of the payload                                 |
|     58 |    P | parameters     | method-specific, see below                               |
| 58 + P |    N | payload        | the coded code map                                       |
| 58+P+N |    4 | crc32          | `zlib.crc32` of every byte before it                     |

Flag bit 1 (variable depth; images with a stage axis only) says that
position `p` of the `(h, w, n)` map keeps only its first `depth[p]`
stages. The payload then opens with a depth section (`uint32` length L,
`n` uint16 frequencies of the depths 1..n, L bytes of ANS words of the
`(h, w)` depths under the table those frequencies give), and the method
codes the kept codes stage by stage, stage `s` holding the positions whose
depth exceeds `s` in raster order; `bitstream.depth` has the details.
Decoded maps hold `ABSENT` (-1) at the stages a position does not keep.
Readers older than flag bit 1 refuse these streams (unknown flag).

Format, version 1 (read only)
-----------------------------
Images only; a 54-byte fixed header `magic, version (1), method, flags
(uint16), model_id, image height, width (uint32), channels, stages
(uint16), code height, width, num_codes (uint32), params_length (uint16),
payload_length (uint32)`, then parameters, payload and CRC as in version
2. All `stages` are stored (`total_stages == kept_stages`).

The codes are serialised in C order of the code map: row by row, and within
a position all stages before the next position.

Methods:

* `0` packed: every code takes exactly `ceil(log2 K)` bits, most significant
  bit first, codes back to back; the last byte is padded with zero bits, so
  `N == ceil(h * w * n * ceil(log2 K) / 8)`. `P == 0`.
* `1` static: an i.i.d. entropy code under a fixed per-model distribution
  over the K codes. The payload is the compressed word stream of
  `constriction.stream.stack.AnsCoder` (32-bit words, each stored
  little-endian, `N % 4 == 0`) for
  `constriction.stream.model.Categorical(probabilities, perfect=False)`;
  the codes are pushed with `encode_reverse`, so they decode in order.
  Without a stage axis (and in version 1 always) one `(K,)` distribution
  codes the map in C order; a version-2 map with a stage axis is coded
  stage after stage, each stage in raster order under its own row of an
  `(n, K)` table (or all under one `(K,)`).
  `P == 8`: the first 8 bytes of BLAKE2b of the normalised probabilities as
  little-endian float64, so a decoder holding another distribution fails
  with a clear error instead of producing wrong codes.
* `2` prior: each code is entropy coded under an autoregressive prior's
  conditional distribution given the codes before it
  (`vqvae_tf.codec.prior_coding`; decoding needs the prior, i.e. TensorFlow, and
  runs it position by position). An image map without a stage axis, and
  every audio stream, has `P == 20`:

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

  With a stage axis (a residual model's `(h, w, n)` map) the prior codes
  stage 0 only and the stages after it are coded as method 1 codes them,
  under rows `1..n-1` of the model's `(n, K)` tables. `P == 32`: the 20
  bytes above (their tiling and CRC are stage 0's), then

  | offset | size | field               | meaning                                            |
  |-------:|-----:|---------------------|----------------------------------------------------|
  |     20 |    4 | prior_payload_bytes | length of the prior's part of the payload          |
  |     24 |    8 | finer fingerprint   | method 1's fingerprint of the `(n - 1, K)` rows     |

  and the payload is the prior's part (as above, for the `(h, w)` map of
  stage 0) followed by method 1's payload of stages `1..n-1` (none for
  `n == 1`). Readers older than this layout refuse these streams with a
  clear error (they took a stage axis with method 2 for an invalid header).
  `vqvae_tf.codec.bitstream.prior_method` codes them.

  An audio stream keeps every stage (`n == S`) and codes them all with a
  speech prior over S * K tokens (`vqvae_tf.codec.prior_coding.sequences`):
  the 20 bytes above, no tail; the `(frames, S)` codes are read as one
  `(1, frames * S)` map, time-major, in tiles `1 x L` (the prior's segment
  of whole frames, `L % S == 0`), each position's table from its stage's
  K tokens only. Older readers refuse method 2 in audio streams.
* `3`-`255`: unassigned.

New methods take a new method id and carry what they need in the method
parameters, so files written with earlier methods stay readable. A layout
change of the fixed header takes a new version number.

Decoding never trusts the header: every size is checked against the actual
data length and against caller-set limits before anything is allocated, and
every failure raises `BitstreamError` (a `ValueError`) with a one-line message.

Modules: `header` (constants, `Method`, `Kind`, `Header`, `read_header`,
`make_model_id`), `audio_format` (`AudioFormat`), `depth` (variable
depth), `packing` (method 0), `static` (method 1, on the ANS coder of
`vqvae_tf.codec.entropy`), `stream` (`encode_stream`, `decode_stream`,
files); method 2 is `vqvae_tf.codec.prior_coding.tiled`.
"""

from vqvae_tf.codec.bitstream.depth import ABSENT
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
    "ABSENT",
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
