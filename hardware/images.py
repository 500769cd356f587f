"""Image conversions shared by the sources: everything becomes uint8 grayscale, C-contiguous."""

from __future__ import annotations

import cv2
import numpy as np

from skiptrack_types import InvalidInputError, SourceError


def to_gray(image: np.ndarray) -> np.ndarray:
    """Any image OpenCV decodes (gray, BGR, BGRA; 8 or 16 bit) as uint8 grayscale (H, W), C-contiguous."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    elif image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise InvalidInputError(f"images must be 8 or 16 bit, got {image.dtype}")
    return np.ascontiguousarray(image)


def split_side_by_side(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) halves of a side-by-side stereo image (H, 2W)."""
    if image.shape[1] % 2:
        raise SourceError(f"a side-by-side stereo image needs an even width, got {image.shape[1]} pixels")
    half = image.shape[1] // 2
    return np.ascontiguousarray(image[:, :half]), np.ascontiguousarray(image[:, half:])
