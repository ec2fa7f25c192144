"""Training-time augmentation on float32 images in [0, 1] (one image at a time)."""

import tensorflow as tf

CHOICES = ("flip", "crop", "color")
PRESETS = {"none": (), "standard": ("flip", "crop"), "all": CHOICES}


def parse_augment(spec: str) -> tuple:
    """'none', 'standard', 'all' or a comma list of flip, crop, color."""
    spec = (spec or "none").strip()
    if spec in PRESETS:
        return PRESETS[spec]
    parts = tuple(p.strip() for p in spec.split(",") if p.strip())
    unknown = [p for p in parts if p not in CHOICES]
    if unknown:
        raise ValueError(
            f"augment={spec!r}: unknown {unknown}; expected {sorted(PRESETS)} or a comma list of {CHOICES}"
        )
    return parts


def make_augment_fn(ops: tuple, pad: int = 4):
    """Returns image -> image applying the chosen ops with random parameters."""

    def augment(image):
        if "flip" in ops:
            image = tf.image.random_flip_left_right(image)
        if "crop" in ops:
            shape = tf.shape(image)
            padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
            image = tf.image.random_crop(padded, shape)
        if "color" in ops:
            image = tf.image.random_brightness(image, 0.1)
            image = tf.image.random_contrast(image, 0.8, 1.2)
            image = tf.clip_by_value(image, 0.0, 1.0)
        return image

    return augment
