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
    assert list_codecs("base") == ["jpeg", "npy", "passthrough", "png", "webp"]
    assert list_codecs("labels") == ["crops", "fp16", "none", "topk"]
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


# --- image codecs at ImageNet shape: stacks cut into members within each format's limits ---------


def _structured(k: int, c: int, h: int, w: int) -> np.ndarray:
    """uint8 (k, c, h, w): smooth waves (0..200) shifted by a per-image offset, a noisy corner."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    tile = np.stack([100 + 100 * np.sin(yy / (9 + 4 * i) + xx / (13 + 3 * i)) for i in range(c)]).astype(np.uint8)  # (c, h, w)
    out = tile[None] + (np.arange(k, dtype=np.uint8) * 7 % 50)[:, None, None, None]  # (k, c, h, w)
    out[:, :, :4, :4] = RNG.integers(0, 256, (k, c, 4, 4), dtype=np.uint8)
    return out


def _close(codec, out: np.ndarray, want: np.ndarray) -> None:
    if codec.spec()["name"] == "png" or codec.spec().get("lossless"):
        np.testing.assert_array_equal(out, want)
    else:
        assert np.abs(out.astype(int) - want).mean() < 3


def test_writer_stores_an_imagenet_shaped_jpeg_group_in_bounded_members(tmp_path) -> None:
    from builders import write_dataset

    from infer_data import GroupRecord, iter_groups, read_index
    from infer_data.reader import GroupSchema

    bases = _structured(1000, 3, 224, 224)
    rec = GroupRecord(bases, np.arange(1000), np.arange(1000), np.zeros((1, 3, 224, 224), np.float32), ["t0"], None)
    root = write_dataset(tmp_path / "in1k", [rec], codecs={"base": {"name": "jpeg", "quality": 90}, "labels": "none"})
    index = read_index(root)
    assert index.minor == 1 and index.codecs["base"] == {"name": "jpeg", "quality": 90, "stack": 73}  # 73 * 224 <= 16383
    bounds = {s: b for s, b in GroupSchema(index).bounds.items() if s.startswith("base")}
    assert sorted(bounds) == [f"base.{i:03d}.jpg" for i in range(14)]
    assert bounds["base.000.jpg"] == 2 * 73 * 224 * 3 * 224 + 65536 and bounds["base.013.jpg"] == 2 * 51 * 224 * 3 * 224 + 65536
    got = next(iter_groups(root, index)).bases
    assert got.shape == (1000, 3, 224, 224)
    assert np.abs(got[::37].astype(np.int16) - bases[::37]).mean() < 3  # every member, sampled


ALL_BASE_SPECS = [{"name": "png"}, {"name": "jpeg", "quality": 90}, {"name": "webp", "quality": 90},
                  {"name": "webp", "lossless": True}, {"name": "npy"}]


def _round_trip(spec: dict, shape: tuple) -> dict:
    bases = _structured(*shape)
    codec = create_codec("base", spec, base_shape=shape)
    members = codec.encode(bases)
    assert sorted(members) == codec.member_names(shape)
    assert all(len(data) <= codec.max_member_bytes(s, shape) for s, data in members.items())
    _close(codec, codec.decode(members, shape, "t"), bases)
    return members


@pytest.mark.parametrize("spec", ALL_BASE_SPECS)
@pytest.mark.parametrize("shape", [(3, 1, 9000, 20), (40, 1, 450, 24), (2, 3, 96, 2500)])
def test_every_base_codec_round_trips_tall_and_wide_images(spec: dict, shape: tuple) -> None:
    members = _round_trip(spec, shape)
    if spec["name"] != "npy":  # one member per floor(16383 / T) images
        t = create_codec("base", spec).tile_height(shape[2])
        assert len(members) == -(-shape[0] // max(1, 16383 // t))


@pytest.mark.parametrize("spec", ALL_BASE_SPECS[:2])
def test_megapixel_images_round_trip(spec: dict) -> None:
    assert list(_round_trip(spec, (4, 3, 1024, 1024))) == [f"base.{'png' if spec['name'] == 'png' else 'jpg'}"]


def test_stack_rule_keeps_small_groups_in_one_member() -> None:
    for shape in [(10, 3, 32, 32), (100, 3, 32, 32), (200, 3, 64, 64)]:
        codec = create_codec("base", "png", base_shape=shape)
        assert codec.member_names(shape) == ["base.png"] and "stack" not in codec.spec()
    codec = create_codec("base", {"name": "jpeg", "quality": 75}, base_shape=(1000, 3, 64, 64))
    assert codec.spec() == {"name": "jpeg", "quality": 75, "stack": 255}  # 255 * 64 <= 16383
    assert codec.member_names((1000, 3, 64, 64)) == ["base.000.jpg", "base.001.jpg", "base.002.jpg", "base.003.jpg"]
    many = create_codec("base", {"name": "png", "stack": 1}, base_shape=(1200, 1, 8, 8))
    names = many.member_names((1200, 1, 8, 8))
    assert names[0] == "base.0000.png" and names[-1] == "base.1199.png" and names == sorted(names)


def test_a_spec_without_stack_is_the_one_member_layout_of_format_1_0() -> None:
    bases = _structured(80, 1, 224, 8)  # 17,920 rows: past the stack rule, within PNG
    codec = create_codec("base", {"name": "png", "compress_level": 9})
    members = codec.encode(bases)
    assert list(members) == ["base.png"] and codec.max_member_bytes("base.png", bases.shape) == 2 * 80 * 224 * 8 + 65536
    np.testing.assert_array_equal(codec.decode(members, bases.shape, "t"), bases)


def test_image_codecs_refuse_what_their_format_cannot_hold() -> None:
    with pytest.raises(CodecError, match=r"^codec base/jpeg: images of 70000 x 10 pixels exceed JPEG's limit of 65500 pixels "
                                         r"per side; store these bases with codec png or npy$"):
        create_codec("base", "jpeg", base_shape=(2, 3, 70000, 10))
    with pytest.raises(CodecError, match=r"^codec base/webp: images of 16 x 20000 pixels exceed WebP's limit of 16383"):
        create_codec("base", "webp", base_shape=(2, 3, 16, 20000))
    with pytest.raises(CodecError, match=r"^codec base/jpeg: stack 500 makes members 112000 rows tall, past JPEG's "
                                         r"65500-pixel limit; use stack <= 292$"):
        create_codec("base", {"name": "jpeg", "stack": 500}, base_shape=(1000, 3, 224, 224))
    with pytest.raises(CodecError, match=r"^codec base/jpeg: 300 stacked images are 67200 rows, past JPEG's 65500-pixel limit; "
                                         r"set a stack of at most 292 \(ShardWriter picks one\)$"):
        create_codec("base", "jpeg").encode(np.zeros((300, 1, 224, 8), np.uint8))
    with pytest.raises(CodecError, match=r"codec base/png: bad parameters \{'stack': 0\}.*stack must be a positive number"):
        create_codec("base", {"name": "png", "stack": 0})


def test_writer_refuses_images_taller_than_jpeg_allows(tmp_path) -> None:
    from infer_data import DatasetInfo, MethodInfo, ShardWriter

    info = DatasetInfo("tall", ["a", "b"], (1, 66000, 4), [0.5], [0.25])
    with pytest.raises(CodecError, match="images of 66000 x 4 pixels exceed JPEG's limit of 65500 pixels per side"):
        ShardWriter(tmp_path / "x", dataset=info, method=MethodInfo(2, 0, 0, 1, []), codecs={"base": "jpeg"})
    assert not (tmp_path / "x" / "index.json").exists()


def test_member_bytes_do_not_depend_on_the_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    from infer_data import image_codecs

    bases = _structured(30, 3, 40, 16)
    codec = create_codec("base", {"name": "jpeg", "quality": 80, "stack": 4})
    monkeypatch.setattr(image_codecs, "MAX_CODEC_THREADS", 1)
    serial = codec.encode(bases)
    monkeypatch.setattr(image_codecs, "MAX_CODEC_THREADS", 8)
    assert codec.encode(bases) == serial and len(serial) == 8


@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_webdataset_sees_one_sample_with_every_stacked_member(dataset_factory) -> None:
    import webdataset as wds
    from builders import make_groups

    from infer_data.wds import shard_urls

    groups = make_groups(2, 5, 1, (3, 6, 4))
    root = dataset_factory(groups, codecs={"base": {"name": "png", "stack": 2}})
    samples = list(wds.WebDataset(shard_urls(root), shardshuffle=False).decode("rgb8"))
    assert [s["__key__"] for s in samples] == ["g000000", "g000001"]
    for s, want in zip(samples, groups):
        assert sorted(k for k in s if k.startswith("base")) == ["base.000.png", "base.001.png", "base.002.png"]
        stacked = np.concatenate([s[f"base.{i:03d}.png"] for i in range(3)])  # (K*H, W, C)
        np.testing.assert_array_equal(stacked.reshape(5, 6, 4, 3).transpose(0, 3, 1, 2), want.bases)
    import gc

    gc.collect()


def test_decoding_checks_every_member_against_the_declared_stack() -> None:
    bases = _structured(6, 3, 6, 4)
    members = create_codec("base", {"name": "png", "stack": 3}).encode(bases)  # base.000.png, base.001.png: 18 rows each
    declared = create_codec("base", {"name": "png", "stack": 2})  # expects three members of 12 rows
    with pytest.raises(FormatError, match=r"^g000001 member 'base.000.png': image is 4x18, the index declares 4x12$"):
        declared.decode(members, bases.shape, "g000001")
    with pytest.raises(FormatError, match=r"^g000001: missing member 'base.002.png'; the shard is incomplete"):
        declared.decode({k: v for k, v in declared.encode(bases).items() if k != "base.002.png"}, bases.shape, "g000001")
