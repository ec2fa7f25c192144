"""Training-time augmentation on float32 images in [0, 1] (one image at a time), stateless:
the draws are a function of the seed each image gets (see tfadv.data.pipeline)."""

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
            f"Expected augment in {sorted(PRESETS)} or a comma list of {CHOICES}; unknown "
            f"{unknown}. Received: augment={spec!r}"
        )
    return parts


def make_augment_fn(ops: tuple, pad: int = 4):
    """Returns (image, seed) -> image applying the chosen ops; `seed` is a (2,) int stateless
    seed."""
    unknown = [op for op in ops if op not in CHOICES]
    if unknown:
        raise ValueError(f"Expected augmentation ops from {CHOICES}. Received: ops={tuple(ops)!r}")

    def augment(image, seed):
        seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
        if "flip" in ops:
            image = tf.image.stateless_random_flip_left_right(image, seeds[0])
        if "crop" in ops:
            shape = tf.shape(image)
            padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
            image = tf.image.stateless_random_crop(padded, shape, seeds[1])
        if "color" in ops:
            image = tf.image.stateless_random_brightness(image, 0.1, seeds[2])
            image = tf.image.stateless_random_contrast(image, 0.8, 1.2, seeds[3])
            image = tf.clip_by_value(image, 0.0, 1.0)
        return image

    return augment
