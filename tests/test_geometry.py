"""Window geometry: one centre rule, upstream's variant rule, bins and N, for every command."""

import numpy as np
import pytest

from jax_basenji.data.genome import Genome
from jax_basenji.errors import InputError
from jax_basenji.geometry import (Geometry, Window, central_bins, centred, centred_window, one_hot_window, tile,
                                  variant_start)

BASENJI2 = Geometry(131_072, 896, 128)


def test_a_window_is_centred_on_the_floor_of_the_intervals_middle():
    assert centred(1000, 1001, 10) == (995, 1005)  # one bp: the window's centre index 5 holds it
    assert centred(1000, 1003, 10) == (996, 1006)  # middle 1001.5 -> 1001
    assert centred(5, 5, 8) == (1, 9)  # a TSS: start = end
    assert centred(0, 10, 64) == (-27, 37)  # before the chromosome: N there
    assert centred_window("chr2", 1000, 1001, 10) == Window("chr2", 995)


def test_a_variants_first_base_sits_at_index_half_length_minus_one():
    # upstream basenji_sad.py: 1-based POS at 0-based window index L // 2 - 1
    for pos, length in [(1000, 10), (131_073, 131_072), (7, 16)]:
        start = variant_start(pos, length)
        assert (pos - 1) - start == length // 2 - 1
    # one bp right of the centre rule's window on the same base, as upstream
    assert variant_start(1001, 10) == centred(1000, 1001, 10)[0] + 1


def test_central_bins_centre_odd_counts_on_the_middle_bin_and_split_even_ones():
    assert central_bins(896, 3) == slice(447, 450)  # the seed's TSS bins
    assert central_bins(896, 1) == slice(448, 449)
    assert central_bins(896, 2) == slice(447, 449)  # basenji_predict_bed.py
    assert central_bins(896, 896) == slice(0, 896)
    assert BASENJI2.site(384) == slice(447, 450)
    assert BASENJI2.site(None) == slice(0, 896)


@pytest.mark.parametrize("site_length", [0, 100, 129, 896 * 128 + 128, -128])
def test_a_site_length_off_the_bin_grid_or_beyond_the_output_is_refused(site_length):
    with pytest.raises(InputError, match=f"--site-length {site_length} "):
        BASENJI2.site(site_length)


def test_output_bins_start_after_the_crop_and_tiles_abut():
    assert BASENJI2.crop == 8192 and BASENJI2.stride == 114_688
    assert BASENJI2.bin_start(1000) == 9192
    assert BASENJI2.bin_start(1000, 447) == 9192 + 447 * 128
    geo = Geometry(64, 4, 8)  # crop 16, stride 32
    windows = tile("c", 70, geo)
    assert [w.start for w in windows] == [-16, 16, 48]
    bins = [geo.bin_start(w.start, j) for w in windows for j in range(geo.bins)]
    assert bins == list(range(0, 96, 8))  # back to back from 0, covering [0, 70)


def test_one_hot_windows_read_n_past_the_ends_as_zeros_or_the_models_n_value(tmp_path):
    (tmp_path / "g.fa").write_text(">c\nACGTNacgt\n")
    genome = Genome(str(tmp_path / "g.fa"))
    x = one_hot_window(genome, Window("c", -2), 6)
    assert x.dtype == np.uint8 and x.shape == (6, 4)
    np.testing.assert_array_equal(x.argmax(1)[2:], [0, 1, 2, 3])
    assert not x[:2].any()
    y = one_hot_window(genome, Window("c", 3), 8, n_value=0.25)  # T N a c g t | past the end: N N
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y[[1, 6, 7]], 0.25)
    np.testing.assert_array_equal(y[[0, 2, 3, 4, 5]], np.eye(4)[[3, 0, 1, 2, 3]])
