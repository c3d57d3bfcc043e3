"""Omniglot counting input pipeline: the resize, the sampler, the three loaders and their errors.

Loader logic runs on generated npz/zip files and mocked TFDS records (always); the `data`-marked tests
check the loaders against each other on the real files and skip with a reason when they are absent.
"""

from __future__ import annotations

import io
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from examples.common.data_dir import resolve_data_dir
from examples.omniglot_counting import fake_data as fd
from examples.omniglot_counting import input_pipeline as ip

NUM_FAKE_CLASSES = 30


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Every test writes its cache under tmp_path, never to ~/.cache."""
    monkeypatch.setenv("EQAGG_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def fake_dir(tmp_path_factory):
    """Fake ``omniglot/images_{background,evaluation}.{npz,zip}`` with the same glyphs per split."""
    root = tmp_path_factory.mktemp("data")
    for split, seed in (("background", 0), ("evaluation", 1)):
        fd.write_fake_npz(root, split, num_classes=NUM_FAKE_CLASSES, seed=seed)
        fd.write_fake_zip(root, split, num_classes=NUM_FAKE_CLASSES, seed=seed)
    return root


def _real_omniglot():
    try:
        return resolve_data_dir(subdir="omniglot")
    except FileNotFoundError as err:
        pytest.skip(f"EQAGG_DATA_DIR not set and ../shared/data absent: {err}")


def _real_file(name: str):
    path = _real_omniglot() / name
    if not path.is_file():
        pytest.skip(f"real Omniglot file {path} is absent.")
    return path


@pytest.fixture(scope="module")
def real_background():
    _real_file("images_background.npz")
    return ip.load_npz("background", cache=False)


def _canonical_drawer_order(images: np.ndarray) -> np.ndarray:
    """Sorts each class's images by their pixels, to compare loaders that order drawers differently."""
    flat = images.reshape(images.shape[0], images.shape[1], -1)
    order = np.stack([np.lexsort(row.T[::-1]) for row in flat])
    return np.take_along_axis(images, order[:, :, None, None], axis=1)


def _tagged_images(num_classes: int, num_drawers: int) -> np.ndarray:
    """Images whose pixel (0, 0) is the class row and pixel (0, 1) the drawer."""
    images = np.zeros((num_classes, num_drawers, ip.IMAGE_SIZE, ip.IMAGE_SIZE), np.float32)
    images[:, :, 0, 0] = np.arange(num_classes)[:, None]
    images[:, :, 0, 1] = np.arange(num_drawers)[None, :]
    return images


# ---------------------------------------------------------------------------------------------------
# The resize.


def test_downsample_equals_block_mean_of_4x_upsampled_image():
    # Independent truth: area averaging = repeat each pixel 4x4 (105 * 4 = 420 = 28 * 15), then
    # average 15x15 blocks, in float64.
    ink = np.random.default_rng(0).random((3, 105, 105)) < 0.3
    up = ink.repeat(4, axis=1).repeat(4, axis=2).astype(np.float64)
    expected = up.reshape(3, 28, 15, 28, 15).mean(axis=(2, 4))
    got = ip.downsample(ink)
    assert got.dtype == np.float32 and got.shape == (3, 28, 28)
    # float32 rounding of k / 225 only.
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-7)


def test_downsample_conserves_ink():
    ink = np.random.default_rng(1).random((4, 105, 105)) < 0.3
    # Each output pixel covers 3.75 x 3.75 source pixels; float32 sums of k / 225 round at ~1e-7
    # relative per pixel, far below the 1e-4 tolerance.
    np.testing.assert_allclose(
        ip.downsample(ink).sum(axis=(1, 2)) * 3.75**2, ink.sum(axis=(1, 2)), rtol=1e-4
    )


def test_downsample_is_independent_of_batching_and_extremes_are_exact():
    ink = np.random.default_rng(2).random((1500, 105, 105)) < 0.2  # More than one internal chunk.
    batched = ip.downsample(ink)
    np.testing.assert_array_equal(batched[1234], ip.downsample(ink[1234]))
    assert (ip.downsample(np.ones((105, 105), bool)) == 1).all()
    assert (ip.downsample(np.zeros((2, 2, 105, 105), bool)) == 0).all()
    with pytest.raises(ValueError, match="105, 105"):
        ip.downsample(np.zeros((28, 28)))


# ---------------------------------------------------------------------------------------------------
# The sampler.


def _decode(batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    images = batch["images"][..., 0]
    return images[:, :, 0, 0].astype(int), images[:, :, 0, 1].astype(int)


def test_sets_hold_k_distinct_classes_each_present_with_distinct_drawers():
    sets = ip.CountingSets(_tagged_images(30, 20), batch_size=2000, seed=3)
    batch = sets.batch(0)
    assert batch["images"].shape == (2000, 16, 28, 28, 1) and batch["images"].dtype == np.float32
    assert batch["count"].shape == (2000,) and batch["count"].dtype == np.int32
    classes, drawers = _decode(batch)
    for row_classes, row_drawers, k in zip(classes, drawers, batch["count"], strict=True):
        assert len(np.unique(row_classes)) == k  # Exactly k classes, so each chosen one is present.
        pairs = {(c, d) for c, d in zip(row_classes, row_drawers, strict=True)}
        assert len(pairs) == 16  # 20 drawers >= 16 slots: no image repeats within a set.
    # k covers 1..10, uniformly: 200 expected per value, sd ~13; 80 is > 6 sd.
    values, freq = np.unique(batch["count"], return_counts=True)
    np.testing.assert_array_equal(values, np.arange(1, 11))
    assert np.abs(freq - 200).max() < 80


def test_classes_and_fill_slots_are_uniform():
    sets = ip.CountingSets(_tagged_images(30, 20), batch_size=6000, seed=4)
    batch = sets.batch(0)
    classes, _ = _decode(batch)
    # Each class is in a set with probability E[k] / 30 = 5.5 / 30: ~1100 of 6000 sets, sd ~30.
    present = np.zeros(30)
    for row in classes:
        present[np.unique(row)] += 1
    assert np.abs(present - 6000 * 5.5 / 30).max() < 150  # ~5 sd.
    # With k = 2 a given class (here the smaller id; the class of a random slot would be size-biased)
    # fills 1 + Binomial(14, 1/2) slots: mean 8, variance 3.5. ~600 such sets: the sample mean has
    # sd ~0.08 and the sample variance sd ~0.2, so 0.4 and 1.0 are ~5 sd.
    pairs = classes[batch["count"] == 2]
    multiplicity = (pairs == pairs.min(axis=1, keepdims=True)).sum(axis=1)
    assert abs(multiplicity.mean() - 8) < 0.4
    assert abs(multiplicity.var() - 3.5) < 1.0
    assert multiplicity.min() >= 1 and multiplicity.max() <= 15


def test_batches_are_deterministic_in_seed_and_step():
    images = _tagged_images(30, 20)
    a = ip.CountingSets(images, batch_size=8, seed=7)
    b = ip.CountingSets(images, batch_size=8, seed=7)  # A fresh object: no hidden state.
    for step in (0, 5, 123456):
        np.testing.assert_array_equal(a.batch(step)["images"], b.batch(step)["images"])
        np.testing.assert_array_equal(a.batch(step)["count"], b.batch(step)["count"])
    assert not np.array_equal(a.batch(0)["images"], a.batch(1)["images"])
    other_seed = ip.CountingSets(images, batch_size=8, seed=8)
    assert not np.array_equal(a.batch(0)["images"], other_seed.batch(0)["images"])
    np.testing.assert_array_equal(next(a.iterate(start_step=5))["images"], a.batch(5)["images"])


def test_sampler_rejects_bad_arguments():
    with pytest.raises(ValueError, match="max_count=10"):
        ip.CountingSets(_tagged_images(8, 20), batch_size=4)
    with pytest.raises(ValueError, match="min_count"):
        ip.CountingSets(_tagged_images(30, 20), batch_size=4, min_count=3, max_count=2)
    with pytest.raises(ValueError, match="step"):
        ip.CountingSets(_tagged_images(30, 20), batch_size=4).batch(-1)


def test_batch_of_64_sets_from_964_classes_is_fast():
    sets = ip.CountingSets(np.zeros((964, 20, 28, 28), np.float32), batch_size=64)
    times = []
    for step in range(20):
        start = time.perf_counter()
        sets.batch(step)
        times.append(time.perf_counter() - start)
    # ~3 ms measured on 2 CPU cores; 50 ms leaves room for a loaded CI machine.
    assert np.median(times) < 0.05


def test_fake_split_feeds_the_sampler():
    split = fd.fake_split(12, 20, seed=5)
    assert split.images.shape == (12, 20, 28, 28) and split.images.max() == 1
    batch = ip.CountingSets(split.images, batch_size=4, max_count=10).batch(0)
    assert batch["images"].shape == (4, 16, 28, 28, 1)


# ---------------------------------------------------------------------------------------------------
# Loader logic on generated files (always runs).


@pytest.mark.parametrize("split", ["background", "evaluation"])
def test_npz_zip_and_tfds_loaders_agree_on_fake_files(fake_dir, split):
    seed = 0 if split == "background" else 1
    from_npz = ip.load_npz(split, fake_dir)
    from_zip = ip.load_zip(split, fake_dir)
    records = {
        ip._TFDS_SPLITS[split]: fd.fake_tfds_records(split, num_classes=NUM_FAKE_CLASSES, seed=seed)
    }
    with fd.mock_tfds_omniglot(records):
        from_tfds = ip.load_tfds(split, "/unused/under/the/mock")
    offset = 964 if split == "evaluation" else 0
    expected = fd.fake_split(NUM_FAKE_CLASSES, seed=seed, first_class_id=offset)
    for loaded in (from_npz, from_zip, from_tfds):
        np.testing.assert_array_equal(loaded.class_ids, offset + np.arange(NUM_FAKE_CLASSES))
    # npz and zip keep drawer order (the zip was written shuffled); TFDS records do not name drawers.
    np.testing.assert_array_equal(from_npz.images, expected.images)
    np.testing.assert_array_equal(from_zip.images, expected.images)
    np.testing.assert_array_equal(
        _canonical_drawer_order(from_tfds.images), _canonical_drawer_order(expected.images)
    )


def test_split_aliases_and_select(fake_dir):
    test = ip.load_npz("test", fake_dir)
    np.testing.assert_array_equal(test.class_ids[:2], [964, 965])
    picked = test.select([970, 964])
    np.testing.assert_array_equal(picked.images[1], test.images[0])
    with pytest.raises(KeyError, match="3"):
        test.select([3])
    with pytest.raises(ValueError, match="split must be one of"):
        ip.load_npz("validation", fake_dir)


def test_cache_round_trips_exactly_and_follows_the_source_file(tmp_path, monkeypatch):
    fd.write_fake_npz(tmp_path, num_classes=12, num_drawers=4)
    first = ip.load_npz("background", tmp_path)
    cached_files = list((tmp_path / "cache" / "omniglot").glob("npz-background-*.npz"))
    assert len(cached_files) == 1
    # A cached load must not rebuild: make any rebuild fail.
    with monkeypatch.context() as patch:
        patch.setattr(ip, "downsample", lambda ink: pytest.fail("rebuilt despite the cache"))
        again = ip.load_npz("background", tmp_path)
    np.testing.assert_array_equal(
        again.images, first.images
    )  # The uint8 coverage cache is lossless.
    np.testing.assert_array_equal(again.class_ids, first.class_ids)
    fd.write_fake_npz(tmp_path, num_classes=13, num_drawers=4)  # The source changes: rebuild.
    assert ip.load_npz("background", tmp_path).num_classes == 13


def test_load_omniglot_auto_prefers_npz_then_zip(tmp_path):
    fd.write_fake_zip(tmp_path, num_classes=12, num_drawers=3)
    from_zip = ip.load_omniglot("train", data_dir=tmp_path)
    fd.write_fake_npz(tmp_path, num_classes=11, num_drawers=3)
    assert ip.load_omniglot("train", data_dir=tmp_path).num_classes == 11  # npz wins.
    assert from_zip.num_classes == 12
    with pytest.raises(FileNotFoundError, match="images_evaluation.npz nor images_evaluation.zip"):
        ip.load_omniglot("test", data_dir=tmp_path)


def test_zip_with_a_missing_drawer_is_rejected(tmp_path):
    full = fd.write_fake_zip(tmp_path, num_classes=11, num_drawers=3)
    broken = full.with_name("broken.zip")
    with zipfile.ZipFile(full) as src, zipfile.ZipFile(broken, "w") as dst:
        for info in src.infolist():
            if not info.filename.endswith("0005_02.png"):
                dst.writestr(info, src.read(info))
    with pytest.raises(ValueError, match="class 4 has 2 images"):
        ip.load_zip(data_dir=tmp_path, filename="broken.zip")


# ---------------------------------------------------------------------------------------------------
# Errors a person can act on.


def test_missing_file_error_names_the_path_and_the_file(tmp_path):
    (tmp_path / "omniglot").mkdir()
    with pytest.raises(FileNotFoundError) as err:
        ip.load_npz("evaluation", tmp_path)
    assert str(tmp_path / "omniglot" / "images_evaluation.npz") in str(err.value)
    with pytest.raises(FileNotFoundError) as err:
        ip.load_zip("background", tmp_path)
    message = str(err.value)
    assert str(tmp_path / "omniglot" / "images_background.zip") in message
    assert "github.com/brendenlake/omniglot" in message


def test_missing_data_dir_error_says_which_file_goes_where(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        ip.load_zip("evaluation", tmp_path / "nowhere")
    message = str(err.value)
    assert "nowhere" in message and "omniglot/" in message and "images_evaluation.zip" in message


def test_unprepared_tfds_says_how_to_prepare_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="tfds build omniglot --file_format=array_record"):
        ip.load_tfds("train", tmp_path / "tfds")


# ---------------------------------------------------------------------------------------------------
# The real data.


@pytest.mark.data
def test_zip_loader_on_small1_equals_npz_loader(real_background):
    small1 = ip.load_zip("background", filename="images_background_small1.zip")
    assert small1.images.shape == (136, 20, 28, 28)
    # The npz pixels were checked equal to these PNGs upstream, so the loaders agree exactly.
    np.testing.assert_array_equal(small1.images, real_background.select(small1.class_ids).images)


@pytest.mark.data
def test_tfds_loader_on_small1_records_equals_zip_loader():
    path = _real_file("images_background_small1.zip")
    records = []
    with zipfile.ZipFile(path) as archive:  # Decoded as TFDS does: RGB uint8, label = XXXX - 1.
        for name in archive.namelist():
            if name.endswith(".png"):
                image = Image.open(io.BytesIO(archive.read(name))).convert("RGB")
                records.append(
                    {
                        "image": np.asarray(image),
                        "label": np.int64(int(name.rsplit("/", 1)[1][:4]) - 1),
                    }
                )
    records = [records[i] for i in np.random.default_rng(0).permutation(len(records))]
    with fd.mock_tfds_omniglot({"small1": records}):
        from_tfds = ip.load_tfds("small1")
    from_zip = ip.load_zip(filename="images_background_small1.zip")
    np.testing.assert_array_equal(from_tfds.class_ids, from_zip.class_ids)
    np.testing.assert_array_equal(
        _canonical_drawer_order(from_tfds.images), _canonical_drawer_order(from_zip.images)
    )


@pytest.mark.data
def test_real_splits_have_the_published_sizes_and_global_ids(real_background):
    _real_file("images_evaluation.npz")
    evaluation = ip.load_npz("evaluation", cache=False)
    assert real_background.images.shape == (964, 20, 28, 28)
    assert evaluation.images.shape == (659, 20, 28, 28)
    np.testing.assert_array_equal(real_background.class_ids, np.arange(964))
    np.testing.assert_array_equal(evaluation.class_ids, 964 + np.arange(659))
    # Strokes cover a small part of the page: a polarity flip would give ~0.92.
    assert 0.03 < real_background.images.mean() < 0.15
    batch = ip.CountingSets(evaluation.images, batch_size=4, seed=0).batch(0)
    assert batch["images"].shape == (4, 16, 28, 28, 1)
