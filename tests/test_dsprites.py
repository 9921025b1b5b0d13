"""The procedural dSprites: the grid of factors, images checked against their definition, determinism, the cache."""

import math

import numpy as np
import pytest

from aekit import AekitError
from aekit.cli import main
from aekit.data.dsprites import RADIUS, DSprites, parse_spec


@pytest.fixture
def dsprites(tmp_path):
    return DSprites(root=tmp_path)


def test_the_grid_is_matthey_et_al(dsprites):
    assert len(dsprites) == 737280 == 3 * 6 * 40 * 32 * 32
    assert dsprites.factor_sizes == (3, 6, 40, 32, 32)
    shapes, scales, orientations, xs, ys = dsprites.values
    np.testing.assert_array_equal(shapes, [0, 1, 2])
    np.testing.assert_allclose(scales, [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert orientations[0] == 0 and orientations[-1] == pytest.approx(2 * math.pi * 39 / 40) and orientations.max() < 2 * math.pi
    np.testing.assert_allclose(np.diff(orientations), 2 * math.pi / 40)
    for pos in (xs, ys):
        assert pos[0] == 0 and pos[-1] == 1 and len(pos) == 32
    # index i ↔ factors by C-order unravelling, and back
    i = np.array([0, 1, 32, 1024, 40960, 737279])
    f = dsprites.factors(i)
    np.testing.assert_array_equal(f[-1], [2, 5, 39, 31, 31])
    np.testing.assert_array_equal(f[2], [0, 0, 0, 1, 0])
    np.testing.assert_array_equal(dsprites.index(f), i)


def test_rendering_equals_the_definition_pixel_by_pixel(dsprites):
    rng = np.random.default_rng(0)
    factors = np.concatenate([dsprites.sample_factors(200, rng),
                              [[s, 5, o, x, y] for s in range(3) for o in (0, 7) for x in (0, 31) for y in (0, 31)]])
    assert np.array_equal(dsprites.render(factors), dsprites.render_full(factors))


@pytest.mark.parametrize("scale_index, x_index, y_index", [(0, 0, 0), (5, 31, 31), (2, 10, 20), (5, 16, 3)])
def test_an_upright_square_covers_the_pixel_centres_inside_it(dsprites, scale_index, x_index, y_index):
    """At orientation 0 the square is the pixels whose centres lie within h = R·s/√2 of its centre on both axes."""
    image = dsprites.render([[0, scale_index, 0, x_index, y_index]])[0]
    s = 0.5 + 0.1 * scale_index
    h = RADIUS * s / math.sqrt(2)
    x0 = RADIUS + x_index / 31 * (64 - 2 * RADIUS)
    y0 = RADIUS + y_index / 31 * (64 - 2 * RADIUS)
    cols = [c for c in range(64) if abs(c + 0.5 - x0) <= h]
    rows = [r for r in range(64) if abs(r + 0.5 - y0) <= h]
    expected = np.zeros((64, 64), bool)
    expected[np.ix_(rows, cols)] = True
    assert np.array_equal(image, expected)
    assert abs(image.sum() - (2 * h) ** 2) <= 4 * 2 * h + 4  # its area, 2R²s², up to the boundary pixels


def test_shapes_have_their_areas_and_stay_in_their_disc(dsprites):
    rng = np.random.default_rng(1)
    for shape, unit_area in ((0, 2.0), (1, math.pi * 0.5), (2, None)):
        f = dsprites.sample_factors(300, rng)
        f[:, 0] = shape
        images = dsprites.render(f)
        scale = dsprites.values[1][f[:, 1]] * RADIUS
        x0 = RADIUS + dsprites.values[3][f[:, 3]] * (64 - 2 * RADIUS)
        y0 = RADIUS + dsprites.values[4][f[:, 4]] * (64 - 2 * RADIUS)
        for image, r, cx, cy in zip(images, scale, x0, y0):
            rr, cc = np.nonzero(image)
            assert np.hypot(cc + 0.5 - cx, rr + 0.5 - cy).max() <= r + 1e-9  # inside the disc of radius R·s
            if unit_area is not None:  # square 2R²s², ellipse πR²s²/2, within the boundary pixels
                assert abs(len(rr) - unit_area * r ** 2) <= 2 * math.pi * r
    # the heart's area: (X²+Y²−1)³ ≤ X²Y³ encloses 3.6595 in (X, Y), and (X, Y) = 1.26·(u, v) + (0, 0.25)
    big = dsprites.render([[2, 5, 0, 16, 16]])[0].sum()
    assert big == pytest.approx(3.6595 / 1.26 ** 2 * RADIUS ** 2, rel=0.05)


def test_orientation_turns_the_sprite_counter_clockwise(dsprites):
    """An ellipse (long axis along u) at orientation 10 (a quarter turn) is the upright one rotated by 90°."""
    flat = dsprites.render([[1, 5, 0, 16, 16]])[0]
    turned = dsprites.render([[1, 5, 10, 16, 16]])[0]
    assert flat.any(0).sum() > 1.8 * flat.any(1).sum()  # wide
    assert turned.any(1).sum() > 1.8 * turned.any(0).sum()  # tall
    heart = dsprites.render([[2, 5, 0, 16, 16]])[0]
    rows = np.nonzero(heart.any(1))[0]
    assert heart[rows[0]].sum() < heart[rows[0] + 3].sum() and heart[rows[-1]].sum() <= 2  # lobes up, tip down


def test_generation_is_deterministic(tmp_path):
    rng = np.random.default_rng(2)
    a, b = DSprites(root=tmp_path / "a"), DSprites(root=tmp_path / "b")
    f = a.sample_factors(500, rng)
    assert np.array_equal(a.render(f), b.render(f))
    assert np.array_equal(a.observe(f), a.render(f).reshape(500, -1).astype(np.float32))


def test_the_cache_holds_every_image_and_a_damaged_one_is_refused(tmp_path):
    small = DSprites(factor_sizes=(3, 2, 4, 4, 4), root=tmp_path)  # the same ranges on a coarser grid
    assert len(small) == 384
    path = small.build_cache(progress=False)
    everything = np.arange(len(small))
    assert np.array_equal(small.images(everything), small.render(small.factors(everything)))
    shuffled = np.random.default_rng(0).permutation(everything)[:50]
    assert np.array_equal(DSprites(factor_sizes=(3, 2, 4, 4, 4), root=tmp_path).images(shuffled),
                          small.render(small.factors(shuffled)))
    packed = np.load(path)
    packed[-1] = 0  # a row the check reads
    np.save(path, packed)
    with pytest.raises(AekitError, match="disagrees with the generator; delete it"):
        DSprites(factor_sizes=(3, 2, 4, 4, 4), root=tmp_path).images([0])


def test_factors_out_of_range_are_refused(dsprites):
    with pytest.raises(AekitError, match="dsprites factor scale takes indices 0..5, got 6"):
        dsprites.render([[0, 6, 0, 0, 0]])
    with pytest.raises(AekitError, match="dsprites factor shape takes indices 0..2, got -1"):
        dsprites.index([[-1, 0, 0, 0, 0]])
    with pytest.raises(AekitError, match="dsprites image indices run 0..737279"):
        dsprites.factors([737280])
    with pytest.raises(AekitError, match="integer indices of shape"):
        dsprites.render(np.zeros((2, 4), int))
    with pytest.raises(AekitError, match="dsprites factor orientation takes indices 0..39, got 40-41"):
        parse_spec("orientation=40-41", dsprites)
    with pytest.raises(AekitError, match="unknown factor 'colour'"):
        parse_spec("colour=1", dsprites)
    count, allowed = parse_spec("5000,shape=2,x=0-3", dsprites)
    assert count == 5000 and list(allowed[0]) == [2] and list(allowed[3]) == [0, 1, 2, 3] and len(allowed[4]) == 32


def test_dsprites_as_a_data_set(tmp_path, capsys):
    from aekit.data import load_data

    splits = load_data("dsprites:500,shape=1,scale=4-5", data_dir=tmp_path)
    assert splits.image_shape == (1, 64, 64) and len(splits.train) + len(splits.val) + len(splits.test) == 500
    assert set(splits.train.y.tolist()) == {1} and splits.num_classes == 3
    assert set(np.unique(splits.train.x.numpy())) == {0.0, 1.0}
    again = load_data("dsprites:500,shape=1,scale=4-5", data_dir=tmp_path)
    assert np.array_equal(again.test.x.numpy(), splits.test.x.numpy())  # the same subsample every time
    code = main(["train", "vae", "--data", "dsprites:shape=3", "--data-dir", str(tmp_path), "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "dsprites factor shape takes indices 0..2, got 3" in err
    assert not (tmp_path / "x").exists()
