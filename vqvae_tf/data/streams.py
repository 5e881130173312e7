"""Sources decoded inside the pipeline (folder, tfrecord, tfds): the shared train and validation steps.

A streamed source hands `stream_bundle` its train and validation items and
a `decode(item) -> (uint8 image HWC, int32 label)`. Training: shuffle the
items, decode, one random crop (and flip) per image, batch, then optionally
`crops.augment`; validation: the centre crop of each image, in order.
"""

import tensorflow as tf

from vqvae_tf.data.bundle import AUTOTUNE, DatasetBundle, estimate_variance, finish, step_seed
from vqvae_tf.data.crops import augment as augment_crops


def _random_crop(image, size, seed, flip):
    seeds = tf.random.experimental.stateless_split(seed, 2)
    crop = tf.image.stateless_random_crop(image, [size, size, tf.shape(image)[-1]], seeds[0])
    return tf.image.stateless_random_flip_left_right(crop, seeds[1]) if flip else crop


def _centre_crop(image, size):
    shape = tf.shape(image)
    return tf.image.crop_to_bounding_box(image, (shape[0] - size) // 2, (shape[1] - size) // 2, size, size)


def stream_bundle(
    train_items,
    val_items,
    decode,
    config,
    *,
    name,
    channels,
    cache,
    skip_errors,
    num_train=None,
    num_validation=None,
    num_classes=None,
    class_names=None,
):
    """Bundle for sources decoded in the pipeline (folder, tfrecord, tfds).

    `decode(item) -> (uint8 image HWC, int32 label)`. Items are shuffled
    before decoding, so the shuffle buffer holds cheap items, not pixels.
    """
    size = config.image_size
    flip = True if config.flip is None else config.flip

    def decoded(items):
        items = items.map(decode, num_parallel_calls=AUTOTUNE)
        return items.ignore_errors(log_warning=True) if skip_errors else items

    def crop(step, item):
        image, label = item
        return _random_crop(image, size, step_seed(config, step), flip), label

    if cache:
        train = (
            decoded(train_items)
            .cache()
            .shuffle(
                min(config.shuffle_buffer, num_train or config.shuffle_buffer),
                seed=config.seed,
                reshuffle_each_iteration=True,
            )
            .repeat()
        )
    else:
        train = decoded(
            train_items.shuffle(config.shuffle_buffer, seed=config.seed, reshuffle_each_iteration=True).repeat()
        )
    train = train.enumerate().map(crop, num_parallel_calls=AUTOTUNE)
    train = train.batch(config.batch_size, drop_remainder=True)
    if config.augment:

        def augment(step, batch):
            return augment_crops(batch[0], step_seed(config, step)), batch[1]

        train = train.enumerate().map(augment, num_parallel_calls=AUTOTUNE)
    train = finish(train, config, train=True)
    validation = decoded(val_items).map(lambda x, y: (_centre_crop(x, size), y), num_parallel_calls=AUTOTUNE)
    if cache:
        validation = validation.cache()
    validation = finish(
        validation.batch(config.batch_size, drop_remainder=config.validation_drop_remainder), config, train=False
    )
    return DatasetBundle(
        train=train,
        validation=validation,
        channels=channels,
        image_size=size,
        description=name,
        data_variance=estimate_variance(train, config),
        num_train=num_train,
        num_validation=num_validation,
        num_classes=num_classes,
        class_names=class_names,
    )
