"""In-memory image sets: uint8 pixels, integer labels."""

import dataclasses

import numpy as np


class DataError(ValueError):
    """A dataset cannot be found, read or parsed."""


@dataclasses.dataclass
class ImageSet:
    """Images as uint8 (N, H, W, C) and labels as int64 (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self):
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"Expected uint8 images of shape (N, H, W, C). Received: {self.images.dtype} "
                f"{self.images.shape}"
            )
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if self.labels.shape != (len(self.images),):
            raise ValueError(
                f"Expected labels of shape ({len(self.images)},). Received: {self.labels.shape}"
            )

    def __len__(self):
        return len(self.labels)

    def float_images(self) -> np.ndarray:
        """Images as float32 in [0, 1]."""
        return self.images.astype(np.float32) / 255.0

    def take(self, indices) -> "ImageSet":
        return ImageSet(self.images[indices], self.labels[indices])

    def head(self, limit: int) -> "ImageSet":
        return self if not limit or limit >= len(self) else self.take(np.arange(limit))

    def class_counts(self, num_classes: int) -> np.ndarray:
        return np.bincount(self.labels, minlength=num_classes)


@dataclasses.dataclass
class ImageDataset:
    """A dataset split into train / validation / test, with its metadata."""

    name: str
    train: ImageSet
    val: ImageSet
    test: ImageSet
    class_names: list

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple:
        return tuple(self.train.images.shape[1:])

    def summary(self) -> str:
        h, w, c = self.input_shape
        return (
            f"{self.name}: {len(self.train)} train / {len(self.val)} val / {len(self.test)} test "
            f"images of {h}x{w}x{c}, {self.num_classes} classes"
        )
