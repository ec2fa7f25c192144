"""A deterministic, offline, 32x32x3, 10-class dataset a CNN can learn, but not trivially.

Each class is an oriented sinusoidal grating with its own orientation and
frequency, in a per-image random colour, phase and position, mixed with a
distracting grating of a random other class and pixel noise. Classes are told
apart by the shape of the texture, not by colour or mean brightness.
"""

import numpy as np

from tfadv.data.types import ImageSet

CLASS_NAMES = [f"pattern_{i}" for i in range(10)]
ANGLE_JITTER = 0.15  # radians; classes are pi/10 apart
DISTRACTOR_MIX = (0.7, 0.95)  # amplitude of the other-class grating relative to the signal
PIXEL_NOISE = 0.2  # stddev in pixel scale


def _gratings(rng, classes, size):
    n = len(classes)
    angle = classes * (np.pi / 10) + rng.normal(0, ANGLE_JITTER, n)
    freq = 0.18 + 0.09 * (classes % 3) + rng.normal(0, 0.01, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    shift = rng.uniform(-4, 4, (n, 2))
    u = (xx[None] - shift[:, 0, None, None]) * np.cos(angle)[:, None, None] + (
        yy[None] - shift[:, 1, None, None]
    ) * np.sin(angle)[:, None, None]
    return np.sin(2 * np.pi * freq[:, None, None] * u / 2 + phase[:, None, None])


def make_synthetic(
    num_examples: int, seed: int = 0, size: int = 32, num_classes: int = 10
) -> ImageSet:
    """Generates `num_examples` images with balanced labels; same seed, same images."""
    if num_examples <= 0:
        raise ValueError(f"Expected num_examples > 0. Received: num_examples={num_examples!r}")
    rng = np.random.default_rng(seed)
    labels = np.arange(num_examples) % num_classes
    rng.shuffle(labels)
    signal = _gratings(rng, labels, size)
    distractor_classes = (labels + rng.integers(1, num_classes, num_examples)) % num_classes
    distractor = _gratings(rng, distractor_classes, size)
    mix = rng.uniform(*DISTRACTOR_MIX, (num_examples, 1, 1))
    pattern = signal + mix * distractor
    colour = rng.uniform(0.2, 1.0, (num_examples, 1, 1, 3))
    background = rng.uniform(0.2, 0.8, (num_examples, 1, 1, 3))
    images = background + 0.25 * pattern[..., None] * colour
    images += rng.normal(0, PIXEL_NOISE, images.shape)
    images = np.clip(images * 255.0, 0, 255).round().astype(np.uint8)
    return ImageSet(images, labels.astype(np.int64))
