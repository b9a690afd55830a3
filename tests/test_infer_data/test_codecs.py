"""Codec round trips: lossless codecs are bit-exact, lossy ones within their stated precision."""

from __future__ import annotations

import numpy as np
import pytest

from infer_data import CodecError, FormatError, RegistryError, create_codec, list_codecs

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("spec", [{"name": "npy", "zstd_level": 19}, {"name": "npy", "zstd_level": None}, {"name": "png"}])
@pytest.mark.parametrize("chw", [(1, 7, 5), (3, 8, 8)])
def test_lossless_base_codecs_are_bit_exact(spec: dict, chw: tuple[int, int, int]) -> None:
    bases = RNG.integers(0, 256, (4, *chw), dtype=np.uint8)
    codec = create_codec("base", spec)
    members = codec.encode(bases)
    assert sorted(members) == codec.member_names(bases.shape)
    np.testing.assert_array_equal(codec.decode(members, bases.shape, "t"), bases)


def test_jpeg_base_is_close_and_records_quality() -> None:
    yy, xx = np.mgrid[0:32, 0:32]
    smooth = np.stack([(yy * 8) % 256, (xx * 8) % 256, ((yy + xx) * 4) % 256]).astype(np.uint8)[None]  # (1, 3, 32, 32)
    codec = create_codec("base", {"name": "jpeg", "quality": 95})
    out = codec.decode(codec.encode(smooth), smooth.shape, "t")
    assert out.dtype == np.uint8 and out.shape == smooth.shape
    assert np.abs(out.astype(int) - smooth).mean() < 4
    assert codec.spec() == {"name": "jpeg", "quality": 95}


def test_compensator_fp16_and_int8_precision() -> None:
    u = (RNG.standard_normal((3, 3, 8, 8)) * 0.1).astype(np.float32)
    fp16 = create_codec("compensators", "fp16")
    np.testing.assert_array_equal(fp16.decode(fp16.encode(u), u.shape, "t"), u.astype(np.float16))
    int8 = create_codec("compensators", "int8")
    members = int8.encode(u)
    assert sorted(members) == ["comp.npy.zst", "comp_scale.npy"]
    back = int8.decode(members, u.shape, "t")
    scale = np.abs(u).reshape(3, -1).max(axis=1) / 127
    assert (np.abs(back - u).reshape(3, -1).max(axis=1) <= scale / 2 + 1e-7).all()


def test_labels_dense_topk_and_none() -> None:
    y = (RNG.standard_normal((12, 20)) * 3).astype(np.float32)
    dense = create_codec("labels", "fp16")
    np.testing.assert_array_equal(dense.decode(dense.encode(y), y.shape, "t"), y.astype(np.float16))
    topk = create_codec("labels", {"name": "topk", "k": 5})
    back = topk.decode(topk.encode(y), y.shape, "t").astype(np.float32)
    top = np.argsort(-y, axis=1)[:, :5]
    np.testing.assert_allclose(np.take_along_axis(back, top, 1), np.take_along_axis(y, top, 1), rtol=1e-3, atol=1e-3)
    rest_mask = np.ones_like(y, dtype=bool)
    np.put_along_axis(rest_mask, top, False, 1)
    want_rest = (y * rest_mask).sum(1) / 15
    np.testing.assert_allclose(back[rest_mask].reshape(12, 15), np.repeat(want_rest[:, None], 15, 1), atol=1e-2)
    none = create_codec("labels", "none")
    assert none.encode(y) == {}
    with pytest.raises(CodecError, match="stores no soft labels"):
        none.decode({}, y.shape, "t")


def test_registry_lists_and_rejects_unknown_names() -> None:
    assert list_codecs("base") == ["jpeg", "npy", "png"]
    assert list_codecs("labels") == ["fp16", "none", "topk"]
    with pytest.raises(RegistryError, match=r"unknown codec 'base/jpg'.*Did you mean base/jpeg"):
        create_codec("base", "jpg")
    with pytest.raises(CodecError, match="quality must be in 1..100"):
        create_codec("base", {"name": "jpeg", "quality": 0})


def test_decode_rejects_wrong_shape_and_oversized_zstd() -> None:
    codec = create_codec("compensators", "fp16")
    members = codec.encode(np.zeros((2, 1, 4, 4), np.float32))
    with pytest.raises(FormatError, match=r"holds float16 \(2, 1, 4, 4\) but the index declares float16 \(2, 1, 4, 5\)"):
        codec.decode(members, (2, 1, 4, 5), "shard-000000.tar group g000000")
    big = codec.encode(np.zeros((2, 1, 64, 64), np.float32))  # decompresses far beyond a 4x4 bound
    with pytest.raises(CodecError, match="decompresses to more than the .* bytes its declared shape allows"):
        codec.decode(big, (2, 1, 4, 4), "g")


@pytest.mark.parametrize("h", [28, 32, 7])
def test_jpeg_tiles_are_row_aligned_so_images_do_not_bleed(h: int) -> None:
    bases = np.zeros((3, 1, h, 12), np.uint8)
    bases[1] = 255  # a white image between two black ones
    codec = create_codec("base", {"name": "jpeg", "quality": 90})
    out = codec.decode(codec.encode(bases), bases.shape, "t")
    assert codec.tile_height(h) % 16 == 0
    assert np.abs(out[0].astype(int)).max() <= 3 and np.abs(out[2].astype(int)).max() <= 3
    assert np.abs(out[1].astype(int) - 255).max() <= 3


def test_png_holds_a_group_in_one_member() -> None:
    bases = RNG.integers(0, 256, (5, 3, 6, 4), dtype=np.uint8)
    codec = create_codec("base", "png")
    members = codec.encode(bases)
    assert list(members) == ["base.png"]
    from PIL import Image
    import io

    with Image.open(io.BytesIO(members["base.png"])) as im:
        assert im.size == (4, 30) and im.mode == "RGB"


def test_topk_is_one_member_and_bounded_to_uint16_classes() -> None:
    codec = create_codec("labels", {"name": "topk", "k": 3})
    members = codec.encode(np.arange(20, dtype=np.float32).reshape(2, 10))
    assert list(members) == ["label_topk.npy.zst"]
    np.testing.assert_array_equal(codec.decode(members, (2, 10), "t")[0], [3] * 7 + [7, 8, 9])
    with pytest.raises(CodecError, match="70000 classes exceed its 65536; use codec fp16"):
        codec.encode(np.zeros((1, 70_000), np.float32))


def test_parse_codec_sets_the_main_parameter() -> None:
    from infer_data.codecs import parse_codec

    assert parse_codec("base", "jpeg:75") == {"name": "jpeg", "quality": 75}
    assert parse_codec("labels", "topk:5") == {"name": "topk", "k": 5}
    assert parse_codec("compensators", "int8:none") == {"name": "int8", "zstd_level": None}
    assert parse_codec("base", "png") == {"name": "png"}
    with pytest.raises(CodecError, match="quality must be in 1..100"):
        parse_codec("base", "jpeg:101")
    with pytest.raises(CodecError, match="codec 'topk:x': k must be an integer"):
        parse_codec("labels", "topk:x")
    with pytest.raises(CodecError, match="codec labels/none takes no parameter"):
        parse_codec("labels", "none:3")
