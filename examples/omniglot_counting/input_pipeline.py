"""Input pipeline for Omniglot unique-class counting (paper section 5.2).

Each example is a set of 16 Omniglot images that shows ``k`` distinct characters, ``k`` uniform in
1..10; the label is ``k``. Training sets come from the "background" alphabets, test sets from the
"evaluation" alphabets, so the test characters belong to alphabets never seen in training.

Three loaders read the same characters and return the same :class:`OmniglotSplit`:

* :func:`load_npz`: ``images_{background,evaluation}.npz`` in ``<data dir>/omniglot`` (the project's
  offline copy: ``images`` bool ``(C, 20, 105, 105)``, True = white background; ``labels`` ``(C, 20)``).
* :func:`load_zip`: the original ``images_{background,evaluation}.zip`` from
  github.com/brendenlake/omniglot (PNG files ``alphabet/characterNN/XXXX_YY.png``).
* :func:`load_tfds`: TFDS ``omniglot`` prepared in the ``array_record`` format, read with
  ``tfds.data_source``.

Conventions (shared by all loaders):

* Pixels: float32 in [0, 1], **ink = 1, background = 0**. Images are downsized 105x105 -> 28x28 by
  one function, :func:`downsample` (exact area averaging), so the loaders agree bit for bit.
* Class ids: the global Omniglot ids that TFDS uses. File ``XXXX_YY.png`` is class ``XXXX - 1``,
  drawer ``YY - 1``; background classes are 0..963, evaluation classes 964..1622 (the npz stores
  evaluation labels as 0..658, so :func:`load_npz` adds :data:`EVALUATION_CLASS_OFFSET`).
* Drawers are in file order (``YY``) for the npz and zip loaders. TFDS records do not carry the
  drawer, so :func:`load_tfds` keeps each class's images in record order; the sampler treats drawers
  as exchangeable, so this does not change the task.

The downsized arrays are cached as ``.npz`` files in ``resolve_cache_dir("omniglot")``
(``$EQAGG_CACHE_DIR/omniglot``, default ``~/.cache/eqagg/omniglot``), keyed by the source file's path,
size and modification time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import re
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from examples.common.data_dir import resolve_cache_dir, resolve_data_dir

SOURCE_SIZE = 105
IMAGE_SIZE = 28
NUM_DRAWERS = 20
EVALUATION_CLASS_OFFSET = 964
"""Global id of the first evaluation class (TFDS ``omniglot`` labels; file ``0965_YY.png``)."""

SPLITS = ("background", "evaluation")
_SPLIT_ALIASES = {
    "background": "background",
    "train": "background",
    "evaluation": "evaluation",
    "test": "evaluation",
}
_TFDS_SPLITS = {"background": "train", "evaluation": "test"}
DOWNLOAD_URL = "https://github.com/brendenlake/omniglot/raw/master/python/"
Source = Literal["auto", "npz", "zip", "tfds"]

_CACHE_VERSION = 1  # Bump when downsample() or the cache layout changes.
_CHUNK = 1024  # Images per downsampling step: bounds the float32 working memory to ~45 MB.
_COVERAGE_DENOMINATOR = 225  # (4 * 105 / 28 = 15)^2 quarter-pixel cells per output pixel.
_PNG_NAME = re.compile(r"(?:^|/)(\d{4})_(\d{2})\.png$")

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, eq=False)
class OmniglotSplit:
    """Downsized Omniglot characters of one split, as every loader returns them.

    Attributes:
      images: float32 ``[num_classes, num_drawers, 28, 28]``, ink = 1, background = 0.
      class_ids: int64 ``[num_classes]``, global class ids in increasing order.
    """

    images: np.ndarray
    class_ids: np.ndarray

    def __post_init__(self):
        images, class_ids = np.asarray(self.images), np.asarray(self.class_ids)
        if images.ndim != 4 or images.shape[2:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(
                f"images must have shape [num_classes, num_drawers, {IMAGE_SIZE}, {IMAGE_SIZE}], "
                f"got {images.shape}."
            )
        if class_ids.shape != images.shape[:1]:
            raise ValueError(
                f"class_ids must have shape [num_classes] = {images.shape[:1]}, got {class_ids.shape}."
            )
        object.__setattr__(self, "images", images.astype(np.float32, copy=False))
        object.__setattr__(self, "class_ids", class_ids.astype(np.int64, copy=False))

    @property
    def num_classes(self) -> int:
        return self.images.shape[0]

    @property
    def num_drawers(self) -> int:
        return self.images.shape[1]

    def select(self, class_ids: ArrayLike) -> OmniglotSplit:
        """Returns the classes with the given global ids, in the order given.

        Raises:
          KeyError: naming the ids this split does not hold.
        """
        wanted = np.asarray(class_ids, dtype=np.int64).reshape(-1)
        rows = np.searchsorted(self.class_ids, wanted)
        found = (rows < self.num_classes) & (
            self.class_ids[np.minimum(rows, self.num_classes - 1)] == wanted
        )
        if not found.all():
            raise KeyError(f"class ids {wanted[~found][:10].tolist()} are not in this split.")
        return OmniglotSplit(self.images[rows], wanted)


# ---------------------------------------------------------------------------------------------------
# The one resize.


def _area_weights() -> np.ndarray:
    """Integer overlaps ``W[j, i]`` of source pixel ``i`` with output pixel ``j``, in 1/4-pixel units.

    On a grid refined 4x (105 * 4 = 420 = 28 * 15), source pixel ``i`` spans ``[4i, 4i + 4)`` and
    output pixel ``j`` spans ``[15j, 15j + 15)``; each row of ``W`` sums to 15.
    """
    out_lo = np.arange(IMAGE_SIZE)[:, None] * 15
    src_lo = np.arange(SOURCE_SIZE)[None, :] * 4
    overlap = np.minimum(out_lo + 15, src_lo + 4) - np.maximum(out_lo, src_lo)
    return np.clip(overlap, 0, None).astype(np.float32)


_WEIGHTS = _area_weights()


def downsample(ink: ArrayLike) -> np.ndarray:
    """Downsizes binary 105x105 characters to 28x28 by exact area averaging.

    Every loader calls this one function. An output pixel is the fraction of its 3.75 x 3.75 pixel
    footprint that is covered by ink,

    .. math:: y = W x W^\\top / 225,

    with ``W[j, i]`` the integer overlap (in quarter pixels) of source pixel ``i`` and output pixel
    ``j`` (:func:`_area_weights`). This is the area integral that OpenCV's ``INTER_AREA`` computes
    when shrinking (fractional overlaps at the footprint edges); PIL's ``Image.BOX`` differs, as it weights whole source pixels by whether their centre
    falls inside the footprint. Total ink is conserved: ``y.sum() * 3.75**2 == x.sum()``. The products
    and sums are small integers, exact in float32, so the result is a multiple of 1/225 that does not
    depend on batching or the BLAS.

    Args:
      ink: ``[..., 105, 105]`` bool or 0/1 array, 1 = ink.

    Returns:
      float32 ``[..., 28, 28]`` in [0, 1], 1 = ink.

    Raises:
      ValueError: when the last two axes are not 105 x 105.

    Example:
      >>> import numpy as np
      >>> downsample(np.ones((2, 105, 105), bool)).shape
      (2, 28, 28)
    """
    ink = np.asarray(ink)
    if ink.shape[-2:] != (SOURCE_SIZE, SOURCE_SIZE):
        raise ValueError(
            f"downsample expects [..., {SOURCE_SIZE}, {SOURCE_SIZE}] Omniglot images, got shape "
            f"{ink.shape}."
        )
    flat = ink.reshape(-1, SOURCE_SIZE, SOURCE_SIZE)
    out = np.empty((flat.shape[0], IMAGE_SIZE, IMAGE_SIZE), np.float32)
    for start in range(0, flat.shape[0], _CHUNK):
        chunk = flat[start : start + _CHUNK].astype(np.float32)
        out[start : start + _CHUNK] = _WEIGHTS @ (chunk @ _WEIGHTS.T)
    out /= np.float32(_COVERAGE_DENOMINATOR)
    return out.reshape(ink.shape[:-2] + (IMAGE_SIZE, IMAGE_SIZE))


def _ink_from_gray(pixels: np.ndarray) -> np.ndarray:
    """Ink mask of a uint8 grey (or bool, True = white) image: dark pixels are ink."""
    if pixels.dtype == bool:
        return ~pixels
    return pixels < 128


# ---------------------------------------------------------------------------------------------------
# Files, errors and the cache.


def _canonical_split(split: str) -> str:
    try:
        return _SPLIT_ALIASES[split]
    except KeyError:
        raise ValueError(
            f"split must be one of {sorted(_SPLIT_ALIASES)} (train = background alphabets, test = "
            f"evaluation alphabets), got {split!r}."
        ) from None


def _where_to_get(filename: str) -> str:
    if filename.endswith(".zip"):
        return f"download it from {DOWNLOAD_URL}{filename}"
    return (
        "the npz arrays come with the project's offline data (shared/data/omniglot); without them, "
        f"download {filename.replace('.npz', '.zip')} from {DOWNLOAD_URL} and use the zip loader"
    )


def _resolve_file(data_dir: str | os.PathLike | None, filename: str) -> Path:
    """Returns ``<data dir>/omniglot/<filename>`` or raises a FileNotFoundError that says what to do."""
    try:
        folder = resolve_data_dir(data_dir, subdir="omniglot")
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"{err} Omniglot reads '{filename}' from <data dir>/omniglot/ ({_where_to_get(filename)})."
        ) from err
    path = folder / filename
    if not path.is_file():
        raise FileNotFoundError(
            f"Omniglot file '{filename}' is missing: put it at {path} ({_where_to_get(filename)})."
        )
    return path


def _file_key(path: Path) -> tuple:
    stat = path.stat()
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def _cached(
    name: str, key: tuple, build: Callable[[], OmniglotSplit], cache: bool
) -> OmniglotSplit:
    """Loads ``build()``'s result from the cache, else builds and stores it (atomically)."""
    if not cache:
        return _timed(name, build)
    digest = hashlib.sha256(repr((_CACHE_VERSION, key)).encode()).hexdigest()[:16]
    path = resolve_cache_dir("omniglot") / f"{name}-{digest}.npz"
    if path.is_file():
        try:
            with np.load(path) as stored:
                coverage, class_ids = stored["coverage"], stored["class_ids"]
            # Same float32 division as downsample(), so a cached load equals a fresh one exactly.
            images = coverage.astype(np.float32) / np.float32(_COVERAGE_DENOMINATOR)
            return OmniglotSplit(images, class_ids)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
            _log.warning("Ignoring unreadable cache file %s (%s); rebuilding it.", path, err)
    split = _timed(name, build)
    # Coverage counts 0..225 fit in uint8: a lossless cache 4x smaller than float32.
    coverage = np.rint(split.images * _COVERAGE_DENOMINATOR).astype(np.uint8)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, coverage=coverage, class_ids=split.class_ids)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache can be shared like any download.
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return split


def _timed(name: str, build: Callable[[], OmniglotSplit]) -> OmniglotSplit:
    start = time.perf_counter()
    split = build()
    _log.info(
        "Built %s (%d classes) in %.1f s.", name, split.num_classes, time.perf_counter() - start
    )
    return split


def _assemble(
    class_ids: Sequence[int], drawers: Sequence[int] | None, ink: np.ndarray, where: str
) -> OmniglotSplit:
    """Groups ``ink`` images ``[N, 105, 105]`` into ``[classes, drawers]`` and downsizes them.

    Sorted by (class, drawer); with ``drawers=None`` each class keeps its images in input order.
    """
    class_ids = np.asarray(class_ids, np.int64)
    if class_ids.size == 0:
        raise ValueError(f"{where} holds no Omniglot images.")
    if drawers is None:
        order = np.argsort(class_ids, kind="stable")  # Each class keeps its input order.
    else:
        drawer_keys = np.asarray(drawers, np.int64)
        order = np.lexsort((drawer_keys, class_ids))
    classes, per_class = np.unique(class_ids, return_counts=True)
    if (per_class != per_class[0]).any():
        bad = classes[per_class != per_class[0]][0]
        raise ValueError(
            f"{where}: every class needs the same number of drawers, but class {bad} has "
            f"{per_class[classes == bad][0]} images and class {classes[0]} has {per_class[0]}."
        )
    if drawers is not None:
        grid = drawer_keys[order].reshape(len(classes), per_class[0])
        if (np.diff(grid, axis=1) == 0).any():
            raise ValueError(f"{where}: some class has two images from the same drawer.")
    images = downsample(ink[order]).reshape(len(classes), per_class[0], IMAGE_SIZE, IMAGE_SIZE)
    return OmniglotSplit(images, classes)


# ---------------------------------------------------------------------------------------------------
# The three loaders.


def load_npz(
    split: str = "background", data_dir: str | os.PathLike | None = None, *, cache: bool = True
) -> OmniglotSplit:
    """Loads a split from ``<data dir>/omniglot/images_<split>.npz``.

    Args:
      split: "background" (alias "train") or "evaluation" (alias "test").
      data_dir: the folder holding ``omniglot/``; default ``$EQAGG_DATA_DIR``, else ``../shared/data``.
      cache: read and write the downsized arrays in ``resolve_cache_dir("omniglot")``.

    Returns:
      The split's :class:`OmniglotSplit` (ink = 1, global class ids).

    Raises:
      FileNotFoundError: naming the path where the npz file should be.
      ValueError: when the file does not hold Omniglot arrays.
    """
    part = _canonical_split(split)
    path = _resolve_file(data_dir, f"images_{part}.npz")
    offset = EVALUATION_CLASS_OFFSET if part == "evaluation" else 0

    def build() -> OmniglotSplit:
        with np.load(path) as stored:
            white, labels = stored["images"], stored["labels"]
        if white.ndim != 4 or labels.shape != white.shape[:2]:
            raise ValueError(
                f"{path}: expected images (C, 20, 105, 105) and labels (C, 20), got "
                f"{white.shape} and {labels.shape}."
            )
        if (labels != labels[:, :1]).any():
            raise ValueError(f"{path}: labels must be constant along the drawer axis.")
        class_ids = labels[:, 0].astype(np.int64) + offset
        order = np.argsort(class_ids, kind="stable")
        return OmniglotSplit(downsample(_ink_from_gray(white))[order], class_ids[order])

    return _cached(f"npz-{part}", ("npz", _file_key(path)), build, cache)


def load_zip(
    split: str = "background",
    data_dir: str | os.PathLike | None = None,
    *,
    filename: str | None = None,
    cache: bool = True,
) -> OmniglotSplit:
    """Loads a split from the original brendenlake zip (``alphabet/characterNN/XXXX_YY.png``).

    File ``XXXX_YY.png`` is class ``XXXX - 1`` (a global id), drawer ``YY - 1``.

    Args:
      split: "background" (alias "train") or "evaluation" (alias "test"); picks the default filename.
      data_dir: the folder holding ``omniglot/``; default ``$EQAGG_DATA_DIR``, else ``../shared/data``.
      filename: a zip in ``<data dir>/omniglot`` with the same layout, e.g.
        ``"images_background_small1.zip"``; default ``images_<split>.zip``.
      cache: read and write the downsized arrays in ``resolve_cache_dir("omniglot")``.

    Returns:
      An :class:`OmniglotSplit` of the classes in the zip, drawers in ``YY`` order.

    Raises:
      FileNotFoundError: naming the path where the zip should be and where to download it.
      ValueError: when the zip holds no ``XXXX_YY.png`` files or classes with unequal drawer counts.
    """
    part = _canonical_split(split)
    filename = filename or f"images_{part}.zip"
    path = _resolve_file(data_dir, filename)
    stem = filename.removesuffix(".zip")
    return _cached(f"zip-{stem}", ("zip", _file_key(path)), lambda: _read_zip(path), cache)


def _read_zip(path: Path) -> OmniglotSplit:
    from PIL import Image

    class_ids, drawers, ink = [], [], []
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            match = _PNG_NAME.search(info.filename)
            if match is None:
                continue
            with Image.open(io.BytesIO(archive.read(info))) as image:
                pixels = np.asarray(image.convert("L"))
            if pixels.shape != (SOURCE_SIZE, SOURCE_SIZE):
                raise ValueError(f"{path}:{info.filename} is {pixels.shape}, expected 105 x 105.")
            class_ids.append(int(match[1]) - 1)
            drawers.append(int(match[2]) - 1)
            ink.append(_ink_from_gray(pixels))
    if not ink:
        raise ValueError(
            f"{path} holds no Omniglot PNG files named alphabet/characterNN/XXXX_YY.png."
        )
    return _assemble(class_ids, drawers, np.stack(ink), str(path))


def load_tfds(
    split: str = "background", data_dir: str | os.PathLike | None = None, *, cache: bool = True
) -> OmniglotSplit:
    """Loads a split of TFDS ``omniglot`` through ``tfds.data_source`` (no TensorFlow needed).

    The dataset must already be prepared in the ``array_record`` format (random access), e.g. with
    ``tfds build omniglot --file_format=array_record`` on a machine with network access. Records
    hold ``image`` uint8 (105, 105, 3) (white = 255) and a global ``label``; they do not name the
    drawer, so each class keeps its images in record order.

    Args:
      split: "background"/"train" (TFDS "train"), "evaluation"/"test" (TFDS "test"), or the TFDS-only
        subsets "small1", "small2" of the background alphabets.
      data_dir: the TFDS data directory; default TFDS's own (``$TFDS_DATA_DIR`` or
        ``~/tensorflow_datasets``).
      cache: read and write the downsized arrays in ``resolve_cache_dir("omniglot")``.

    Raises:
      FileNotFoundError: when the dataset is not prepared there, saying how to prepare it.
    """
    import tensorflow_datasets as tfds

    tfds_split = split if split in ("small1", "small2") else _TFDS_SPLITS[_canonical_split(split)]
    try:
        source = tfds.data_source("omniglot", split=tfds_split, data_dir=data_dir, download=False)
    except (NotImplementedError, AssertionError, FileNotFoundError, OSError, ValueError) as err:
        where = data_dir or "the TFDS default ($TFDS_DATA_DIR or ~/tensorflow_datasets)"
        raise FileNotFoundError(
            f"TFDS 'omniglot' split {tfds_split!r} is not prepared as array_record in {where}: "
            "on a machine with network access run `tfds build omniglot --file_format=array_record "
            f"--data_dir=<dir>`, or put images_background.zip / images_evaluation.zip from "
            f"{DOWNLOAD_URL} in <data dir>/omniglot and use the zip loader."
        ) from err
    key = ("tfds", str(data_dir), tfds_split, len(source))
    return _cached(f"tfds-{tfds_split}", key, lambda: _read_records(source, tfds_split), cache)


def _read_records(source: Sequence[dict], tfds_split: str) -> OmniglotSplit:
    class_ids, ink = [], []
    for index in range(len(source)):
        record = source[index]
        pixels = np.asarray(record["image"])
        if pixels.shape[:2] != (SOURCE_SIZE, SOURCE_SIZE):
            raise ValueError(f"TFDS omniglot record {index} has image shape {pixels.shape}.")
        class_ids.append(int(record["label"]))
        ink.append(_ink_from_gray(pixels[..., 0] if pixels.ndim == 3 else pixels))
    if not ink:
        raise ValueError(f"TFDS omniglot split {tfds_split!r} is empty.")
    return _assemble(class_ids, None, np.stack(ink), f"TFDS omniglot[{tfds_split}]")


def load_omniglot(
    split: str = "background",
    *,
    source: Source = "auto",
    data_dir: str | os.PathLike | None = None,
    cache: bool = True,
) -> OmniglotSplit:
    """Loads a split from whichever source is given or, with ``source="auto"``, found.

    ``"auto"`` reads ``images_<split>.npz`` from ``<data dir>/omniglot`` when present, else
    ``images_<split>.zip``. ``"tfds"`` reads a prepared TFDS dataset; ``data_dir`` then is the TFDS
    data directory.

    Raises:
      FileNotFoundError: when neither file is there, naming the folder and the files to put in it.
    """
    loaders = {"npz": load_npz, "zip": load_zip, "tfds": load_tfds}
    if source in loaders:
        return loaders[source](split, data_dir, cache=cache)
    if source != "auto":
        raise ValueError(f"source must be 'auto', 'npz', 'zip' or 'tfds', got {source!r}.")
    part = _canonical_split(split)
    zip_name = f"images_{part}.zip"
    try:
        folder = resolve_data_dir(data_dir, subdir="omniglot")
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"{err} Omniglot reads <data dir>/omniglot/{zip_name} (download it from "
            f"{DOWNLOAD_URL}{zip_name}) or images_{part}.npz."
        ) from err
    for kind, loader in (("npz", load_npz), ("zip", load_zip)):
        if (folder / f"images_{part}.{kind}").is_file():
            return loader(part, data_dir, cache=cache)
    raise FileNotFoundError(
        f"Neither images_{part}.npz nor {zip_name} is in {folder}: download {DOWNLOAD_URL}{zip_name} "
        "into that folder, or use source='tfds' with a prepared TFDS omniglot."
    )


# ---------------------------------------------------------------------------------------------------
# Sets for counting.


def _check_counts(num_classes: int, set_size: int, min_count: int, max_count: int) -> None:
    if not 1 <= min_count <= max_count:
        raise ValueError(f"need 1 <= min_count <= max_count, got {min_count} and {max_count}.")
    if max_count > min(num_classes, set_size):
        raise ValueError(
            f"max_count={max_count} distinct classes do not fit: the split has {num_classes} "
            f"classes and a set has set_size={set_size} slots; lower max_count."
        )


def sample_set_indices(
    rng: np.random.Generator,
    num_classes: int,
    num_drawers: int,
    *,
    batch_size: int,
    set_size: int = 16,
    min_count: int = 1,
    max_count: int = 10,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draws which images make up each set: ``k`` distinct classes, each present at least once.

    Per set: ``k ~ U{min_count..max_count}``; ``k`` distinct classes in random order; each gets one
    slot and the other ``set_size - k`` slots go to classes drawn uniformly among the ``k``; the slots
    are shuffled. The images of one class in a set come from distinct drawers (a random permutation of
    drawers, cycled only when a class fills more slots than there are drawers).

    Args:
      rng: the random generator (use ``np.random.default_rng([seed, step])`` for a reproducible stream).
      num_classes, num_drawers: the shape of the image array indexed.
      batch_size: sets per batch.
      set_size: images per set.
      min_count, max_count: range of ``k``, the number of distinct classes.

    Returns:
      ``(classes, drawers, counts)``: int64 ``[batch, set_size]`` row and drawer indices into the
      image array, and int64 ``[batch]`` ``k``.
    """
    _check_counts(num_classes, set_size, min_count, max_count)
    counts = rng.integers(min_count, max_count + 1, size=batch_size)
    # The max_count smallest of iid uniform keys, in key order: a uniformly random ordered subset.
    keys = rng.random((batch_size, num_classes))
    subset = np.argpartition(keys, max_count - 1, axis=1)[:, :max_count]
    subset_keys = np.take_along_axis(keys, subset, axis=1)
    chosen = np.take_along_axis(subset, np.argsort(subset_keys, axis=1), axis=1)
    slots = np.arange(set_size)
    fill = rng.integers(0, counts[:, None], size=(batch_size, set_size))
    which = np.where(slots < counts[:, None], slots, fill)  # Slot j < k holds class j: all present.
    which = np.take_along_axis(which, np.argsort(rng.random(which.shape), axis=1), axis=1)
    # Rank of each slot among the earlier slots of its class -> a distinct drawer per occurrence.
    seen = np.cumsum(which[:, :, None] == np.arange(max_count), axis=1)
    rank = np.take_along_axis(seen, which[:, :, None], axis=2)[..., 0] - 1
    drawer_perms = np.argsort(rng.random((batch_size, max_count, num_drawers)), axis=2)
    drawers = drawer_perms[np.arange(batch_size)[:, None], which, rank % num_drawers]
    classes = np.take_along_axis(chosen, which, axis=1)
    return classes, drawers, counts


@dataclasses.dataclass(frozen=True, eq=False)
class CountingSets:
    """Batches of sets for unique-class counting, deterministic in ``(seed, step)``.

    Attributes:
      images: float32 ``[num_classes, num_drawers, 28, 28]`` (e.g. ``OmniglotSplit.images``).
      batch_size: sets per batch.
      seed: the stream's seed; batch ``step`` uses ``np.random.default_rng([seed, step])``.
      set_size: images per set (16 in the paper).
      min_count, max_count: ``k`` is uniform in ``min_count..max_count`` (1..10).

    Example:
      >>> import numpy as np
      >>> sets = CountingSets(np.zeros((30, 20, 28, 28), np.float32), batch_size=4)
      >>> batch = sets.batch(0)
      >>> batch["images"].shape, batch["count"].dtype
      ((4, 16, 28, 28, 1), dtype('int32'))
    """

    images: np.ndarray
    batch_size: int
    seed: int = 0
    set_size: int = 16
    min_count: int = 1
    max_count: int = 10

    def __post_init__(self):
        images = np.asarray(self.images, np.float32)
        if images.ndim != 4:
            raise ValueError(
                f"images must be [num_classes, num_drawers, height, width], got shape {images.shape}."
            )
        if self.batch_size < 1 or self.set_size < 1:
            raise ValueError(
                f"batch_size and set_size must be positive, got {self.batch_size}, {self.set_size}."
            )
        _check_counts(images.shape[0], self.set_size, self.min_count, self.max_count)
        object.__setattr__(self, "images", images)

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """Returns batch number ``step`` (an int >= 0).

        Returns:
          ``{"images": float32 [batch, set_size, 28, 28, 1], "count": int32 [batch]}``, where
          ``count`` is ``k``, the number of distinct classes (1..10; use ``count - min_count`` as a
          class index for a classifier).
        """
        if int(step) < 0:
            raise ValueError(f"step must be >= 0, got {step}.")
        rng = np.random.default_rng([self.seed, int(step)])
        classes, drawers, counts = sample_set_indices(
            rng,
            self.images.shape[0],
            self.images.shape[1],
            batch_size=self.batch_size,
            set_size=self.set_size,
            min_count=self.min_count,
            max_count=self.max_count,
        )
        return {
            "images": self.images[classes, drawers][..., None],
            "count": counts.astype(np.int32),
        }

    def iterate(self, start_step: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """Yields ``batch(start_step)``, ``batch(start_step + 1)``, ... (resumable by step)."""
        step = start_step
        while True:
            yield self.batch(step)
            step += 1
