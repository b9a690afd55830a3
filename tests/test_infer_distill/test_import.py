"""`infer import`: other methods' image folders packed with M = 0, files stored byte for byte,
per-image or per-crop soft labels, read back exactly through every reader."""

from __future__ import annotations

import gc
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from click.testing import CliRunner
from PIL import Image

from infer_cli.main import main
from infer_data import DeviceLoader, InferDataset, read_index
from infer_data.codecs import create_codec
from infer_data.errors import CodecError, ConfigError, FormatError
from infer_data.reader import GroupSchema, group_members, open_shard
from infer_data.stats import stored_bytes
from infer_data.wds import expand_groups, shard_urls, zstd_handler
from infer_distill.importer import group_size_for, import_folder

COUNTS = {"new000": 3, "new001": 1, "new002": 2}  # unequal counts per class, as RDED/SRe2L sets may have


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def _jpeg(rng: np.random.Generator, size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _source(root: Path, *, labels: bool = True) -> tuple[list[bytes], np.ndarray]:
    """SRC/new00c/class00c_id00i.jpg (6 files) and labels.npy; returns the files in sorted order and the labels."""
    rng = np.random.default_rng(0)
    files = []
    for c, (folder, n) in enumerate(COUNTS.items()):
        (root / folder).mkdir(parents=True)
        for i in range(n):
            data = _jpeg(rng)
            (root / folder / f"class{c:03d}_id{i:03d}.jpg").write_bytes(data)
            files.append(data)
    y = rng.standard_normal((6, 3)).astype(np.float16).astype(np.float32)  # fp16-exact, so stored labels compare exactly
    if labels:
        np.save(root / "labels.npy", y)
    return files, y


def _pixels(data: bytes) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(io.BytesIO(data)).convert("RGB"))).permute(2, 0, 1).float() / 255


def _stored_files(root: Path) -> list[bytes]:
    index = read_index(root)
    schema = GroupSchema(index)
    out: list[bytes] = []
    for entry in index.shards:
        with open_shard(root / entry.name, entry) as f:
            for _, members in group_members(root / entry.name, entry, schema, f):
                out += schema.codecs["base"].files(members, schema.shapes.base, "test")
    return out


def test_import_round_trips_images_labels_and_jpeg_bytes(tmp_path: Path) -> None:
    files, y = _source(tmp_path / "src")
    index = import_folder(tmp_path / "src", tmp_path / "out", group_size=4, dataset_name="cifar10")
    assert (index.method.k, index.method.m, index.method.g, index.method.ipc, index.minor) == (3, 0, 2, 3, 2)  # K=3 divides 6
    assert index.codecs["base"] == {"name": "passthrough", "format": "jpeg"} and index.codecs["compensators"] == {"name": "none"}
    with tarfile.open(tmp_path / "out" / "shard-000000.tar") as tar:
        names = tar.getnames()
    assert names[:4] == ["g000000.base_files.npy", "g000000.base_sizes.npy", "g000000.label.npy.zst", "g000000.meta.json"]
    assert not any("comp" in n for n in names)  # M = 0: no empty compensator member
    assert _stored_files(tmp_path / "out") == files  # the JPEG bytes, unchanged
    ds = InferDataset(tmp_path / "out", normalize=False)
    assert len(ds) == 6 and ds.targets == [0, 0, 0, 1, 2, 2] and ds.classes == list(COUNTS)
    for i in range(6):
        x, target = ds[i]
        assert torch.equal(x, _pixels(files[i])) and torch.equal(target, torch.from_numpy(y[i])), i
    assert (tmp_path / "out" / "README.md").read_text().startswith("# cifar10-ipc3\n")


@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")  # webdataset's open tars
def test_import_reads_through_device_loader_and_webdataset(tmp_path: Path) -> None:
    files, y = _source(tmp_path / "src")
    import_folder(tmp_path / "src", tmp_path / "out")
    ds = InferDataset(tmp_path / "out", normalize=False)
    want = torch.stack([ds[i][0] for i in range(6)])
    loader = DeviceLoader(ds, batch_size=6, shuffle=False, augment="none", mixup_beta=0, return_indices=True, device="cpu")
    x, target, idx = next(iter(loader))
    assert torch.equal(idx, torch.arange(6)) and torch.equal(x, want) and torch.equal(target, torch.from_numpy(y))
    root = tmp_path / "out"
    for pipeline in (wds.WebDataset(shard_urls(root), shardshuffle=False),  # raw member bytes
                     wds.WebDataset(shard_urls(root), shardshuffle=False).decode(zstd_handler)):  # .npy decoded by webdataset
        got = list(pipeline.compose(expand_groups(root, normalize=False)))
        assert len(got) == 6
        for i, (image, label) in enumerate(got):
            assert torch.equal(image, want[i]) and torch.equal(label, torch.from_numpy(y[i])), i
    gc.collect()  # webdataset's unclosed shard files are reported here, not in a later test


def test_import_per_crop_labels(tmp_path: Path) -> None:
    files, _ = _source(tmp_path / "src", labels=False)
    rng = np.random.default_rng(1)
    crops = np.zeros((6, 2, 8), np.float32)  # R = 2 crops: box, flip, 3 logits
    crops[:, :, :4] = [0.25, 0.125, 0.5, 0.75]
    crops[:, 1, 4] = 1
    crops[:, :, 5:] = rng.standard_normal((6, 2, 3)).astype(np.float16)
    paths = sorted((tmp_path / "src").glob("*/*.jpg"))
    for path, arr in zip(paths, crops):
        (tmp_path / "src" / "crops" / path.parent.name).mkdir(parents=True, exist_ok=True)
        np.save(tmp_path / "src" / "crops" / path.parent.name / f"{path.stem}.npy", arr)
    index = import_folder(tmp_path / "src", tmp_path / "out", crops=tmp_path / "src" / "crops")  # inside SRC: not a class
    assert index.codecs["labels"] == {"name": "crops", "crops": 2, "zstd_level": 3} and index.dataset.classes == list(COUNTS)
    schema = GroupSchema(index)
    entry = index.shards[0]
    with open_shard(tmp_path / "out" / entry.name, entry) as f:
        (_, members), = group_members(tmp_path / "out" / entry.name, entry, schema, f)
    boxes, logits = schema.codecs["labels"].decode_crops(members, schema.shapes.labels, "test")
    assert np.array_equal(boxes, crops[:, :, :5]) and np.array_equal(logits.astype(np.float32), crops[:, :, 5:])
    ds = InferDataset(tmp_path / "out", normalize=False)
    assert torch.equal(ds[4][1], torch.from_numpy(crops[4, :, 5:].mean(0).astype(np.float16).astype(np.float32)))
    with tarfile.open(tmp_path / "out" / entry.name) as tar:
        crop_bytes = sum(m.size for m in tar.getmembers() if ".crop_" in m.name)
    assert stored_bytes(tmp_path / "out").labels == crop_bytes > 6 * 2 * 5 * 4  # per-crop members count as labels


def test_export_back_to_class_folders(tmp_path: Path) -> None:
    files, y = _source(tmp_path / "src")
    import_folder(tmp_path / "src", tmp_path / "out")
    code, out = run("export", str(tmp_path / "out"), "--out", str(tmp_path / "back"), "--layout", "files", "--json", "-q")
    assert code == 0, out
    assert json.loads(out) | {"out": ""} == {"out": "", "files": 6, "image_bytes": sum(map(len, files)), "label_bytes": 128 + 6 * 3 * 4,
                                             "layout": "files", "format": "jpeg"}
    listed = (tmp_path / "back" / "files.txt").read_text().split()
    assert [(tmp_path / "back" / p).read_bytes() for p in listed] == files  # the stored files, byte for byte
    assert np.array_equal(np.load(tmp_path / "back" / "labels.npy", allow_pickle=False), y)
    import_folder(tmp_path / "back", tmp_path / "again")  # and back in: the same set
    assert _stored_files(tmp_path / "again") == files
    assert InferDataset(tmp_path / "again").classes == list(COUNTS)


def test_group_size_is_the_largest_divisor() -> None:
    assert [group_size_for(n, 256) for n in (100, 2000, 6, 97, 1000)] == [100, 250, 6, 97, 250]


def test_import_cli_and_stats_compare(tmp_path: Path) -> None:
    _source(tmp_path / "src")
    code, out = run("import", str(tmp_path / "src"), "--out", str(tmp_path / "out"), "--json", "--license", "CC0-1.0")
    assert code == 0, out
    assert json.loads(out)["k"] == 6 and "| license | CC0-1.0 |" in (tmp_path / "out" / "README.md").read_text()
    code, out = run("stats", str(tmp_path / "out"), "--json")
    s = json.loads(out)
    assert code == 0 and s["stored"]["compensators"] == 0 and s["m"] == 0 and s["instances"] == s["stored_images"] == 6


def test_import_errors_are_one_line(tmp_path: Path) -> None:
    _source(tmp_path / "src", labels=False)
    Image.new("RGB", (8, 8)).save(tmp_path / "src" / "new001" / "x.png")
    with pytest.raises(ConfigError, match=r"src: the images are not all JPEG or all PNG files, so they cannot be stored as they are; pass --base-codec png"):
        import_folder(tmp_path / "src", tmp_path / "out")
    (tmp_path / "src" / "new001" / "x.png").unlink()
    Image.new("RGB", (9, 8)).save(tmp_path / "src" / "new001" / "x.jpg")
    with pytest.raises(FormatError, match=r"x.jpg: image is 9x8, the index declares 8x8"):
        import_folder(tmp_path / "src", tmp_path / "out")
    (tmp_path / "src" / "new001" / "x.jpg").unlink()
    np.save(tmp_path / "bad.npy", np.zeros((5, 3), np.float32))
    with pytest.raises(ConfigError, match=r"bad.npy: holds float32 \(5, 3\), expected float \(6, 3\): one row of logits per image"):
        import_folder(tmp_path / "src", tmp_path / "out", labels=tmp_path / "bad.npy")
    with pytest.raises(ConfigError, match="--labels and --crops both given"):
        import_folder(tmp_path / "src", tmp_path / "out", labels=tmp_path / "bad.npy", crops=tmp_path)
    (tmp_path / "crops").mkdir()
    with pytest.raises(ConfigError, match=r"class000_id000.npy: no crop labels for image .*class000_id000.jpg"):
        import_folder(tmp_path / "src", tmp_path / "out", labels=None, crops=tmp_path / "crops")
    code, out = run("import", str(tmp_path / "nope"), "--out", str(tmp_path / "o"))
    assert code == 1 and out.count("\n") == 1 and "nope: no such folder" in out


def test_passthrough_codec_refuses_records_without_files() -> None:
    codec = create_codec("base", {"name": "passthrough"}, base_shape=(2, 3, 8, 8))
    with pytest.raises(FormatError, match="stores image files as given; pass them in GroupRecord.base_files"):
        codec.encode(None)
    with pytest.raises(CodecError, match="format must be one of jpeg, png"):
        create_codec("base", {"name": "passthrough", "format": "gif"})


def test_export_files_layout_refuses_other_sets(tiny_dir: Path, tmp_path: Path) -> None:
    code, out = run("export", str(tiny_dir), "--out", str(tmp_path / "x"), "--layout", "files")
    assert code == 1 and out.count("\n") == 1
    assert "--layout files writes the stored image files of a set made by `infer import` (base codec passthrough, M = 0); " \
           "this set has base codec 'png' and M = 2: use --layout imagefolder" in out


def test_hugging_face_rows_of_an_imported_set_expand_to_its_instances(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    files, y = _source(tmp_path / "src")
    import_folder(tmp_path / "src", tmp_path / "out", group_size=3)
    root = tmp_path / "out"
    ref = InferDataset(root)
    for fmt in (None, "numpy"):  # .npy fields as lists, then as arrays
        rows = datasets.load_dataset("webdataset", data_files={"train": shard_urls(root)}, split="train", cache_dir=str(tmp_path / "hf"))
        items = list(expand_groups(root)(rows.with_format(fmt) if fmt else rows))
        assert len(rows) == 2 and len(items) == 6
        for i, (x, target) in enumerate(items):
            assert torch.equal(x, ref[i][0]) and torch.equal(target, ref[i][1]), i


def test_import_keeps_a_publishers_own_readme(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _source(tmp_path / "src")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "README.md").write_text("mine\n")
    with caplog.at_level("WARNING"):
        import_folder(tmp_path / "src", tmp_path / "out", group_size=4, dataset_name="cifar10")
    assert (tmp_path / "out" / "README.md").read_text() == "mine\n"
    assert f"{tmp_path / 'out'}/README.md is not a card infer wrote: kept it" in caplog.text
