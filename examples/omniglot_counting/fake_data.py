"""A tiny synthetic Omniglot for tests and CPU smoke runs when the real data is absent.

Glyphs are 2-4 random strokes per class; each drawer redraws them with its own shift, endpoint jitter
and pen width. The arrays have the real data's formats, and the writers lay them out as the real
files (npz arrays, the brendenlake zip, TFDS records), so the loaders' logic is tested without data.
"""

from __future__ import annotations

import contextlib
import io
import os
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from examples.omniglot_counting import input_pipeline as ip

_CLASSES_PER_ALPHABET = 10


def make_fake_omniglot(
    num_classes: int = 30, num_drawers: int = ip.NUM_DRAWERS, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Draws synthetic characters in the npz format.

    Args:
      num_classes: characters.
      num_drawers: images per character.
      seed: seed of the glyphs.

    Returns:
      ``(images, labels)``: bool ``[num_classes, num_drawers, 105, 105]``, True = white background
      (as in ``images_*.npz``), and int64 ``[num_classes, num_drawers]`` labels ``0..num_classes-1``.
    """
    rng = np.random.default_rng(seed)
    white = np.ones((num_classes, num_drawers, ip.SOURCE_SIZE, ip.SOURCE_SIZE), bool)
    for c in range(num_classes):
        strokes = rng.uniform(18, 87, size=(rng.integers(2, 5), 2, 2))  # [stroke, end, (y, x)]
        shape = (num_drawers,) + strokes.shape
        ends = strokes + rng.uniform(-3, 3, shape) + rng.uniform(-5, 5, (num_drawers, 1, 1, 2))
        width = rng.uniform(1.5, 3.0, (num_drawers, 1, 1))
        white[c] = _distance_to_segments(ends) > width
    labels = np.repeat(np.arange(num_classes, dtype=np.int64)[:, None], num_drawers, axis=1)
    return white, labels


def _distance_to_segments(ends: np.ndarray) -> np.ndarray:
    """Distance from each pixel centre to the nearest of the segments ``ends [D, S, 2, 2]``.

    Returns ``[D, 105, 105]``: per drawer ``D``, the minimum over its strokes ``S``.
    """
    ends = ends.astype(np.float32)
    coords = np.arange(ip.SOURCE_SIZE, dtype=np.float32)
    y, x = coords[:, None], coords[None, :]
    y0, x0 = ends[:, :, 0, 0, None, None], ends[:, :, 0, 1, None, None]  # [D, S, 1, 1]
    dy, dx = ends[:, :, 1, 0, None, None] - y0, ends[:, :, 1, 1, None, None] - x0
    ry, rx = y - y0, x - x0  # [D, S, H, W]
    t = np.clip((ry * dy + rx * dx) / np.maximum(dy * dy + dx * dx, 1e-6), 0.0, 1.0)
    return np.sqrt((ry - t * dy) ** 2 + (rx - t * dx) ** 2).min(axis=1)


def fake_split(
    num_classes: int = 30,
    num_drawers: int = ip.NUM_DRAWERS,
    *,
    seed: int = 0,
    first_class_id: int = 0,
) -> ip.OmniglotSplit:
    """The synthetic characters as a loader would return them (28x28, ink = 1).

    Example:
      >>> fake_split(12, 5).images.shape
      (12, 5, 28, 28)
    """
    white, _ = make_fake_omniglot(num_classes, num_drawers, seed=seed)
    return ip.OmniglotSplit(ip.downsample(~white), first_class_id + np.arange(num_classes))


def _first_class_id(split: str) -> int:
    return ip.EVALUATION_CLASS_OFFSET if split == "evaluation" else 0


def write_fake_npz(
    data_dir: str | os.PathLike,
    split: str = "background",
    *,
    num_classes: int = 30,
    num_drawers: int = ip.NUM_DRAWERS,
    seed: int = 0,
) -> Path:
    """Writes ``<data_dir>/omniglot/images_<split>.npz`` as the real file is laid out.

    Labels are local ``0..num_classes-1`` in both splits, as in the real evaluation npz.
    """
    white, labels = make_fake_omniglot(num_classes, num_drawers, seed=seed)
    path = Path(data_dir) / "omniglot" / f"images_{split}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, images=white, labels=labels)
    return path


def write_fake_zip(
    data_dir: str | os.PathLike,
    split: str = "background",
    *,
    filename: str | None = None,
    num_classes: int = 30,
    num_drawers: int = ip.NUM_DRAWERS,
    seed: int = 0,
) -> Path:
    """Writes ``<data_dir>/omniglot/images_<split>.zip`` in the brendenlake layout.

    Entries are ``images_<split>/Alphabet_NN/characterMM/XXXX_YY.png`` (1-bit PNGs, white = 1) with
    ``XXXX - 1`` the global class id (evaluation starts at 964) and ``YY`` the drawer; they are
    written in a shuffled order so that a loader must sort them. The same ``seed`` gives the same
    glyphs as :func:`write_fake_npz`.
    """
    from PIL import Image

    white, _ = make_fake_omniglot(num_classes, num_drawers, seed=seed)
    filename = filename or f"images_{split}.zip"
    top, first = filename.removesuffix(".zip"), _first_class_id(split)
    path = Path(data_dir) / "omniglot" / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = [(c, d) for c in range(num_classes) for d in range(num_drawers)]
    order = np.random.default_rng(seed + 1).permutation(len(entries))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for index in order:
            c, d = entries[index]
            alphabet, character = divmod(c, _CLASSES_PER_ALPHABET)
            buffer = io.BytesIO()
            Image.fromarray(white[c, d]).save(buffer, format="PNG")
            archive.writestr(
                f"{top}/Alphabet_{alphabet + 1:02d}/character{character + 1:02d}/"
                f"{first + c + 1:04d}_{d + 1:02d}.png",
                buffer.getvalue(),
            )
    return path


def tfds_records(white: np.ndarray, class_ids: Sequence[int], *, seed: int = 0) -> list[dict]:
    """Turns ``white [C, D, 105, 105]`` (True = white) into records shaped like TFDS ``omniglot``.

    Each record has ``image`` uint8 (105, 105, 3) (white = 255, as TFDS decodes the PNGs), ``label``
    (the global class id), ``alphabet`` and ``alphabet_char_id``; records are shuffled, as TFDS
    stores them, and do not name the drawer.
    """
    records = []
    for row, class_id in enumerate(class_ids):
        alphabet, char = divmod(row, _CLASSES_PER_ALPHABET)
        for d in range(white.shape[1]):
            image = np.repeat(np.where(white[row, d], 255, 0).astype(np.uint8)[..., None], 3, -1)
            records.append(
                {
                    "image": image,
                    "label": np.int64(class_id),
                    "alphabet": np.int64(alphabet),
                    "alphabet_char_id": np.int64(char),
                }
            )
    order = np.random.default_rng(seed).permutation(len(records))
    return [records[i] for i in order]


def fake_tfds_records(
    split: str = "background",
    *,
    num_classes: int = 30,
    num_drawers: int = ip.NUM_DRAWERS,
    seed: int = 0,
) -> list[dict]:
    """The synthetic characters of :func:`write_fake_npz` (same seed) as TFDS records."""
    white, _ = make_fake_omniglot(num_classes, num_drawers, seed=seed)
    return tfds_records(white, _first_class_id(split) + np.arange(num_classes), seed=seed)


@contextlib.contextmanager
def mock_tfds_omniglot(records: Mapping[str, Sequence[dict]]) -> Iterator[None]:
    """Makes ``tfds.data_source("omniglot", split=s)`` return ``records[s]`` (no files, no network).

    Uses ``tfds.testing.mock_data(as_data_source_fn=...)``, so the real ``tfds.data_source`` call
    path (builder lookup, ``download=False``) runs; only ``builder.as_data_source`` is replaced.
    """
    import tensorflow_datasets as tfds

    def as_data_source(builder, split, decoders=None, deserialize_method=None, **kwargs):
        del decoders, deserialize_method, kwargs
        if builder.name != "omniglot" or split not in records:
            raise ValueError(f"no fake records for {builder.name}[{split}].")
        return list(records[split])

    with tfds.testing.mock_data(as_data_source_fn=as_data_source):
        yield
