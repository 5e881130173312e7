"""Files written before the package layout of issue 13 still load and decode.

The fixtures (`tests/fixtures/`, made by `make_compat_fixtures.py` on the old
layout) are checked in a fresh process, so nothing imported by another test
can register a class that `import vqvae_tf` alone would miss.
"""

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
KERAS_FIXTURES = 9
STREAM_FIXTURES = 4


@pytest.mark.slow
def test_old_keras_files_and_streams_load_in_a_fresh_process():
    result = subprocess.run(
        [sys.executable, str(HERE / "children" / "compat_child.py")], capture_output=True, text=True, timeout=300
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith(("OK ", "FAIL "))]
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    oks = [line for line in lines if line.startswith("OK ")]
    assert len([x for x in oks if x.endswith(".keras")]) == KERAS_FIXTURES, lines
    assert len([x for x in oks if x.endswith(".vqz")]) == STREAM_FIXTURES, lines


# Paths documented before the package layout, each with the object it must still give.
OLD_PATHS = [
    ("vqvae_tf.lite_runtime", "LiteEncoder", "vqvae_tf.codec.lite_runtime"),
    ("vqvae_tf.bitstream", "read_header", "vqvae_tf.codec.bitstream"),
    ("vqvae_tf.prior_coding", "encode_codes", "vqvae_tf.codec.prior_coding"),
    ("vqvae_tf.stage_tokens", "stages_to_tokens", "vqvae_tf.priors.stage_tokens"),
    ("vqvae_tf.networks", "subpixel_conv_transpose", "vqvae_tf.models.networks"),
    ("vqvae_tf.prior", "UnigramPrior", "vqvae_tf.priors"),
    ("vqvae_tf.codec_model", "load_model", "vqvae_tf.codec.model"),
    ("vqvae_tf.config", "TrainConfig", "vqvae_tf.training.config"),
    ("export.tflite", "fuse_standalone_relus", "vqvae_tf.export.tflite"),
]
# Names whose old module is now a package of the same name (no warning: the path is current).
SAME_PATHS = [
    ("vqvae_tf.data", "PHOTOS_VALIDATION"),
    ("vqvae_tf.data", "write_tfrecords"),
    ("vqvae_tf.quantizers", "vq_loss_terms"),
    ("vqvae_tf.training", "train_and_evaluate"),
    ("vqvae_tf.codec", "compress_image"),
]


@pytest.mark.parametrize("old, name, new", OLD_PATHS, ids=[p[0] for p in OLD_PATHS])
def test_old_module_paths_warn_and_give_the_same_objects(old, name, new):
    import importlib
    import warnings

    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)
    assert any(issubclass(w.category, FutureWarning) and new in str(w.message) for w in caught), caught


@pytest.mark.parametrize("module, name", SAME_PATHS)
def test_package_keeps_the_old_modules_names(module, name):
    import importlib

    assert hasattr(importlib.import_module(module), name)


def test_old_export_package_attributes_and_codec_packaging_warn():

    import export
    import vqvae_tf.codec
    import vqvae_tf.export
    from vqvae_tf.export import codec_package

    with pytest.warns(FutureWarning, match="vqvae_tf.export.export_model"):
        assert export.export_model is vqvae_tf.export.export_model
    with pytest.warns(FutureWarning, match="vqvae_tf.export.codec_package.package_model"):
        assert vqvae_tf.codec.package_model is codec_package.package_model
    with pytest.raises(AttributeError):
        vqvae_tf.codec.no_such_name  # noqa: B018


def test_old_sample_command_still_runs(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "vqvae_tf.sample", "--workdir", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=HERE.parent,
    )
    assert done.returncode != 0 and "moved to" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
