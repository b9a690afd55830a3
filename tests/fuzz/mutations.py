"""A seeded mutation engine over small distilled datasets: every kind of hostile or broken input.

Each mutation kind is a function ``(rng, root) -> bool`` that edits the dataset folder ``root`` in
place and returns whether it *re-signed* the shards it changed (wrote their new size and sha256
into index.json, as an attacker who controls the index can). Unsigned changes must never be
served with sha256 on; re-signed ones may be served only if they decode to valid data.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import random
import struct
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import zstandard

Mutation = Callable[[random.Random, Path], bool]
KINDS: dict[str, Mutation] = {}


def kind(name: str) -> Callable[[Mutation], Mutation]:
    """Register a mutation kind under ``name``."""

    def register(fn: Mutation) -> Mutation:
        KINDS[name] = fn
        return fn

    return register


# -- helpers -----------------------------------------------------------------------------------


def load_index(root: Path) -> dict[str, Any]:
    return json.loads((root / "index.json").read_text())


def save_index(root: Path, obj: Any) -> None:
    (root / "index.json").write_text(json.dumps(obj))


def pick_shard(rng: random.Random, root: Path) -> tuple[dict[str, Any], int, Path]:
    obj = load_index(root)
    i = rng.randrange(len(obj["shards"]))
    return obj, i, root / obj["shards"][i]["name"]


def resign(root: Path, obj: dict[str, Any], i: int, data: bytes) -> bool:
    """Write shard ``i``'s new bytes and record their size and sha256 in the index."""
    (root / obj["shards"][i]["name"]).write_bytes(data)
    obj["shards"][i].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    save_index(root, obj)
    return True


def read_members(path: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(path) as tar:
        return [(i, tar.extractfile(i).read() if i.isfile() else b"") for i in tar.getmembers()]


def write_members(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buf.getvalue()


MEMBER_TARGET: dict[str, bytes] | None = None  # when set, member kinds edit this {member name: bytes} instead of a shard


def edit_member(rng: random.Random, root: Path, suffixes: tuple[str, ...], edit: Callable[[str, bytes], bytes]) -> bool:
    """Replace one member whose name ends with one of ``suffixes`` by ``edit(name, data)``; re-sign.

    With :data:`MEMBER_TARGET` set the member is picked from, and written back to, that dict.
    """
    if MEMBER_TARGET is not None:
        hits = sorted(n for n in MEMBER_TARGET if ("." + n).endswith(suffixes))
        if hits:
            name = rng.choice(hits)
            MEMBER_TARGET[name] = edit(name, MEMBER_TARGET[name])
        return True
    obj, i, path = pick_shard(rng, root)
    members = read_members(path)
    hits = [j for j, (info, _) in enumerate(members) if info.name.endswith(suffixes)]
    if not hits:
        return False
    j = rng.choice(hits)
    info, data = members[j]
    members[j] = (info, edit(info.name, data))
    return resign(root, obj, i, write_members(members))


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def same_wrapping(name: str, raw: bytes) -> bytes:
    """``raw`` zstd-compressed when member ``name`` is a ``.zst`` member."""
    return zstandard.ZstdCompressor(level=1).compress(raw) if name.endswith(".zst") else raw


def unwrap(name: str, data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompressobj().decompress(data) if name.endswith(".zst") else data


@functools.lru_cache(maxsize=8)
def zeros_zlib(n: int) -> bytes:
    """``n`` zero bytes, zlib level 9 (a decompression bomb; cached, it is slow to build)."""
    return zlib.compress(b"\x00" * n, 9)


@functools.lru_cache(maxsize=8)
def zeros_zstd(n: int) -> bytes:
    """``n`` zero bytes, zstd-compressed (cached)."""
    return zstandard.ZstdCompressor(level=3).compress(b"\x00" * n)


@functools.lru_cache(maxsize=8)
def zeros_npz(n: int) -> bytes:
    """An .npz archive holding ``n`` zero bytes (cached)."""
    buf = io.BytesIO()
    np.savez(buf, a=np.zeros(n, np.uint8))
    return buf.getvalue()


def png_chunk(kind_: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind_ + payload + struct.pack(">I", zlib.crc32(kind_ + payload) & 0xFFFFFFFF)


# -- shard bytes -------------------------------------------------------------------------------


@kind("byte_flip")
def byte_flip(rng: random.Random, root: Path) -> bool:
    _, _, path = pick_shard(rng, root)
    data = bytearray(path.read_bytes())
    for _ in range(rng.randint(1, 8)):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))
    return False


@kind("byte_flip_resigned")
def byte_flip_resigned(rng: random.Random, root: Path) -> bool:
    obj, i, path = pick_shard(rng, root)
    data = bytearray(path.read_bytes())
    for _ in range(rng.randint(1, 8)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return resign(root, obj, i, bytes(data))


@kind("truncate")
def truncate(rng: random.Random, root: Path) -> bool:
    obj, i, path = pick_shard(rng, root)
    data = path.read_bytes()[: rng.randrange(path.stat().st_size)]
    if rng.random() < 0.5:
        return resign(root, obj, i, data)
    path.write_bytes(data)
    return False


@kind("tar_header_edit")
def tar_header_edit(rng: random.Random, root: Path) -> bool:
    """Overwrite one field of one 512-byte header (name, mode, size, type, link name, magic)."""
    obj, i, path = pick_shard(rng, root)
    data = bytearray(path.read_bytes())
    headers = [off for off in range(0, len(data) - 512, 512) if data[off + 257 : off + 262] == b"ustar"]
    off = rng.choice(headers)
    field, value = rng.choice([
        ((0, 100), rng.choice([b"../../etc/passwd", b"g000000.base.png\n\x1b[31mOK", b"x" * 99, b"g9.meta.json", b""])),
        ((124, 12), rng.choice([b"77777777777", b"00000000000", b"\x80" + b"\xff" * 11, b"zzzz"])),
        ((156, 1), rng.choice([b"2", b"1", b"5", b"3", b"L", b"K", b"x", b"g"])),
        ((157, 100), b"/proc/self/pagemap"),
        ((257, 6), b"xxxxx\x00"),
    ])
    start, n = field
    data[off + start : off + start + n] = value.ljust(n, b"\x00")[:n]
    if rng.random() < 0.8:  # a valid header checksum, so the tar module believes the header
        header = data[off : off + 512]
        header[148:156] = b" " * 8
        data[off + 148 : off + 156] = b"%06o\x00 " % sum(header)
    return resign(root, obj, i, bytes(data))


@kind("gnu_longname_bomb")
def gnu_longname_bomb(rng: random.Random, root: Path) -> bool:
    """A GNU long-name header claiming a huge name (up to 1.2 GB) in front of the first member."""
    obj, i, path = pick_shard(rng, root)
    data = path.read_bytes()
    claimed = rng.choice([1_200_000_000, 50_000_000, 70_000, 4000])
    info = tarfile.TarInfo("././@LongLink")
    info.type, info.size = tarfile.GNUTYPE_LONGNAME, claimed
    header = info.tobuf(format=tarfile.GNU_FORMAT)
    body = (b"g000000.meta.json" * (min(claimed, 8192) // 17 + 1))[: min(claimed, 8192)]
    return resign(root, obj, i, header + body + data)


@kind("symlink_member")
def symlink_member(rng: random.Random, root: Path) -> bool:
    obj, i, path = pick_shard(rng, root)
    members = read_members(path)
    info = tarfile.TarInfo(f"{members[0][0].name.split('.')[0]}.meta.json")
    info.type = rng.choice([tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE, tarfile.FIFOTYPE, tarfile.CHRTYPE])
    info.linkname = rng.choice(["/proc/self/pagemap", "/etc/passwd", "../index.json"])
    members.insert(rng.randrange(len(members) + 1), (info, b""))
    return resign(root, obj, i, write_members(members))


@kind("symlink_shard")
def symlink_shard(rng: random.Random, root: Path) -> bool:
    """Replace a shard by a symlink to a special file, another shard or a FIFO."""
    obj, i, path = pick_shard(rng, root)
    path.unlink()
    target = rng.choice(["/proc/self/pagemap", "/dev/zero", "/proc/self/status", "fifo", "other", "dir", "missing"])
    if target == "fifo":
        os.mkfifo(path)
    elif target == "dir":
        path.mkdir()
    elif target == "other":
        other = obj["shards"][(i + 1) % len(obj["shards"])]["name"]
        path.symlink_to(other)
    elif target != "missing":
        path.symlink_to(target)
    return False


@kind("member_reorder")
def member_reorder(rng: random.Random, root: Path) -> bool:
    """Shuffle, duplicate or drop members of one shard."""
    obj, i, path = pick_shard(rng, root)
    members = read_members(path)
    how = rng.choice(["shuffle", "duplicate", "drop", "rename"])
    if how == "shuffle":
        rng.shuffle(members)
    elif how == "duplicate":
        members.insert(rng.randrange(len(members)), members[rng.randrange(len(members))])
    elif how == "drop":
        members.pop(rng.randrange(len(members)))
    else:
        info, data = members[rng.randrange(len(members))]
        info.name = rng.choice(["g999999.meta.json", "g000000.evil.npy", "g000000", "a\nb.meta.json", "g-1.base.png", "x" * 300])
    return resign(root, obj, i, write_members(members))


# -- members -----------------------------------------------------------------------------------


@kind("png_chunk_bomb")
def png_chunk_bomb(rng: random.Random, root: Path) -> bool:
    """Insert a zTXt / iCCP bomb or a huge tEXt chunk after a PNG member's IHDR."""

    def edit(name: str, data: bytes) -> bytes:
        bomb = zeros_zlib(rng.choice([2_000_000, 20_000_000]))
        chunk = rng.choice([png_chunk(b"zTXt", b"k\x00\x00" + bomb), png_chunk(b"iCCP", b"icc\x00\x00" + bomb),
                            png_chunk(b"tEXt", b"k\x00" + b"v" * 300_000)])
        return data[:33] + chunk + data[33:]

    return edit_member(rng, root, (".png",), edit)


@kind("image_header_dims")
def image_header_dims(rng: random.Random, root: Path) -> bool:
    """Claim 30000 x 30000 (or another size) in a PNG IHDR / JPEG SOF / WebP header."""
    w, h = rng.choice([(30000, 30000), (3000, 30000), (1, 1), (8, 65535)])

    def edit(name: str, data: bytes) -> bytes:
        out = bytearray(data)
        if name.endswith(".png"):
            out[16:24] = struct.pack(">II", w, h)
            out[29:33] = struct.pack(">I", zlib.crc32(bytes(out[12:29])) & 0xFFFFFFFF)
        elif name.endswith(".jpg"):
            pos = 2
            while pos + 9 < len(out):
                marker, length = out[pos + 1], struct.unpack(">H", out[pos + 2 : pos + 4])[0]
                if marker in (0xC0, 0xC1, 0xC2):
                    out[pos + 5 : pos + 9] = struct.pack(">HH", h, w)
                    break
                pos += 2 + length
        elif name.endswith(".webp"):
            out[26:30] = struct.pack("<HH", w & 0x3FFF, h & 0x3FFF)
        return bytes(out)

    return edit_member(rng, root, (".png", ".jpg", ".webp"), edit)


@kind("wrong_image_format")
def wrong_image_format(rng: random.Random, root: Path) -> bool:
    """An image member holding another format (GIF, BMP, TIFF, JPEG in .png, ...) of the same size."""
    from PIL import Image

    def edit(name: str, data: bytes) -> bytes:
        fmt = rng.choice(["GIF", "BMP", "TIFF", "JPEG", "PNG", "PPM", "ICO"])
        with Image.open(io.BytesIO(data)) as im:
            buf = io.BytesIO()
            im.convert("RGB").save(buf, format=fmt)
        return buf.getvalue()

    return edit_member(rng, root, (".png", ".jpg", ".webp"), edit)


@kind("npz_in_npy")
def npz_in_npy(rng: random.Random, root: Path) -> bool:
    def edit(name: str, data: bytes) -> bytes:
        return same_wrapping(name, zeros_npz(rng.choice([4, 10_000_000])))

    return edit_member(rng, root, (".npy", ".npy.zst"), edit)


@kind("npy_header")
def npy_header(rng: random.Random, root: Path) -> bool:
    """A .npy header with a bool or huge shape, another dtype, an object dtype or Fortran order."""

    def edit(name: str, data: bytes) -> bytes:
        raw = unwrap(name, data)
        arr = np.load(io.BytesIO(raw), allow_pickle=False)
        header = rng.choice([
            "{'descr': '%s', 'fortran_order': False, 'shape': (True,), }" % arr.dtype.str,
            "{'descr': '%s', 'fortran_order': False, 'shape': (1000000, 1000000, 1000), }" % arr.dtype.str,
            "{'descr': '|O', 'fortran_order': False, 'shape': %r, }" % (arr.shape,),
            "{'descr': '<f8', 'fortran_order': False, 'shape': %r, }" % (arr.shape,),
            "{'descr': '%s', 'fortran_order': True, 'shape': %r, }" % (arr.dtype.str, arr.shape),
            "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': %r, }" % (arr.shape,),
            "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (arr.dtype.str, "1," * 3000),
        ])
        head = header.encode().ljust(((len(header) + 11) // 64 + 1) * 64 - 11) + b"\n"
        return same_wrapping(name, b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head + raw[-arr.nbytes :] if arr.nbytes else b"")

    return edit_member(rng, root, (".npy", ".npy.zst"), edit)


@kind("nan_values")
def nan_values(rng: random.Random, root: Path) -> bool:
    """NaN or infinity in compensators, scales or labels."""

    def edit(name: str, data: bytes) -> bytes:
        arr = np.load(io.BytesIO(unwrap(name, data)), allow_pickle=False).copy()
        if arr.dtype.kind == "f" and arr.size:
            arr.flat[rng.randrange(arr.size)] = rng.choice([np.nan, np.inf, -np.inf])
        elif arr.dtype == np.uint16 and arr.size:  # top-k labels: float16 bit patterns
            arr.flat[rng.randrange(arr.size)] = 0x7E00
        return same_wrapping(name, npy_bytes(arr))

    return edit_member(rng, root, ("comp.npy.zst", "comp.npy", "label.npy.zst", "comp_scale.npy", "label_topk.npy.zst"), edit)


@kind("zstd_bomb")
def zstd_bomb(rng: random.Random, root: Path) -> bool:
    def edit(name: str, data: bytes) -> bytes:
        return zeros_zstd(rng.choice([1 << 20, 64 << 20]))

    return edit_member(rng, root, (".zst",), edit)


@kind("meta_json")
def meta_json(rng: random.Random, root: Path) -> bool:
    """meta.json with huge class ids, deep nesting, wrong types, bad numbers."""

    def edit(name: str, data: bytes) -> bytes:
        meta = json.loads(data)
        k = len(meta["class_ids"])
        how = rng.choice(["bigid", "deep", "types", "neg", "nan", "bigint", "bool", "short", "teachers", "notdict"])
        if how == "deep":
            return b"[" * 3000 + b"]" * 3000 if rng.random() < 0.5 else json.dumps(meta)[:-1].encode() + b', "extra": ' + b"[" * 5000 + b"]" * 5000 + b"}"
        if how == "bigint":
            return json.dumps(meta).replace("[", "[" + "9" * 5000 + ",", 1).encode()
        if how == "nan":
            return json.dumps(meta).replace("]", ", NaN]", 1).encode()
        if how == "notdict":
            return rng.choice([b"[]", b"3", b"null", b'"x"', b"\xff\xfe"])
        meta["class_ids" if how != "teachers" else "teachers"] = {
            "bigid": [10**30] * k, "types": rng.choice(["0", None, {"a": 1}, [[0]] * k, 1.5]), "neg": [-1] * k,
            "bool": [True] * k, "short": [0] * (k - 1), "teachers": [1, 2],
        }[how]
        return json.dumps(meta).encode()

    return edit_member(rng, root, (".meta.json",), edit)


@kind("group_swap")
def group_swap(rng: random.Random, root: Path) -> bool:
    """Exchange the members of two groups (keys follow the bytes), or move a group to another shard."""
    obj, i, path = pick_shard(rng, root)
    members = read_members(path)
    keys = sorted({m[0].name.split(".")[0] for m in members})
    other = (keys + ["g000000", "g000001", "g000002"])[rng.randrange(len(keys) + 3)]
    for info, _ in members:
        key, rest = info.name.split(".", 1)
        if key == keys[0]:
            info.name = f"{other}.{rest}"
    return resign(root, obj, i, write_members(members))


@kind("member_bytes")
def member_bytes(rng: random.Random, root: Path) -> bool:
    """Flip, cut or extend the bytes of one member (any suffix)."""

    def edit(name: str, data: bytes) -> bytes:
        how = rng.choice(["flip", "cut", "extend", "empty"])
        if how == "flip" and data:
            out = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
            return bytes(out)
        if how == "cut":
            return data[: rng.randrange(len(data) + 1)]
        return data + bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))) if how == "extend" else b""

    return edit_member(rng, root, ("",), edit)


MEMBER_KINDS = ("member_bytes", "png_chunk_bomb", "image_header_dims", "wrong_image_format", "npz_in_npy", "npy_header",
                "nan_values", "zstd_bomb", "meta_json")


# -- index.json --------------------------------------------------------------------------------


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, prefix + (i,))
    return out


def _set(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    node = obj
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return obj


RAW_MARK = "@@RAW@@"
WRONG_VALUES: list[Any] = [None, True, False, 0, -1, 1, 2**63, 2**64 + 7, 1.5, -0.0, "", "x", "\n\x1b[2J", [], [0], {}, {"a": 1},
                           10**7, "0" * 64, [3, 30000, 30000], RAW_MARK + "Infinity", RAW_MARK + "NaN", RAW_MARK + "-Infinity",
                           RAW_MARK + "1e999", RAW_MARK + "9" * 5000, RAW_MARK + "[" * 3000 + "]" * 3000]


def _dump_with_raw(obj: Any, raw: str | None) -> str:
    text = json.dumps(obj)
    return text if raw is None else text.replace(json.dumps(RAW_MARK), raw)


@kind("index_types")
def index_types(rng: random.Random, root: Path) -> bool:
    """Replace one field anywhere in index.json by a value of a wrong type or range (raw JSON too)."""
    obj = load_index(root)
    path = rng.choice(_paths(obj)[1:])
    value = rng.choice(WRONG_VALUES)
    raw = value[len(RAW_MARK):] if isinstance(value, str) and value.startswith(RAW_MARK) else None
    _set(obj, path, RAW_MARK if raw is not None else value)
    (root / "index.json").write_text(_dump_with_raw(obj, raw))
    return False


@kind("index_huge")
def index_huge(rng: random.Random, root: Path) -> bool:
    """Huge shapes, class counts or group counts, with the other counts kept consistent."""
    obj = load_index(root)
    how = rng.choice(["shape", "k", "groups", "g63", "classes", "bytes", "teachers"])
    m, k = obj["method"], obj["method"]["k"]
    if how == "shape":
        obj["dataset"]["image_shape"] = rng.choice([[3, 30000, 30000], [3, 3000, 30000], [1, 1, 10**9], [3, 65536, 65536]])
    elif how == "k":
        m["k"] = rng.choice([10**6, 10**7, 2**40])
    elif how == "classes":
        obj["dataset"]["classes"] = ["c"] * rng.choice([10**5, 10**6 + 1])
    elif how in ("groups", "g63"):
        n = 2**63 if how == "g63" else 10**7
        s = obj["shards"][-1]
        s["groups"] += n
        s["instances"] = s["groups"] * k * (m["m"] + 1)
        m["g"] += n
        if rng.random() < 0.5:
            s["bytes"] = s["groups"] * 4096
    elif how == "bytes":
        obj["shards"][0]["bytes"] = rng.choice([4 << 30, 2**63 - 1, 10**12])
    else:
        m["m"], m["teachers"] = 1000, [f"t{j}" for j in range(1000)]
    save_index(root, obj)
    return False


@kind("index_shards")
def index_shards(rng: random.Random, root: Path) -> bool:
    """Shards out of order, duplicated, gapped, negative first_group, or an empty list."""
    obj = load_index(root)
    sh = obj["shards"]
    how = rng.choice(["reverse", "duplicate", "gap", "negative", "empty", "drop", "swap_first", "swap_names"])
    if how == "reverse":
        sh.reverse()
    elif how == "duplicate":
        sh.append(dict(sh[0]))
    elif how == "gap":
        for s in sh[1:]:
            s["first_group"] += 1
    elif how == "negative":
        sh[0]["first_group"] = -1
    elif how == "empty":
        obj["shards"] = []
    elif how == "drop" and len(sh) > 1:
        sh.pop(rng.randrange(len(sh)))
    elif how == "swap_first" and len(sh) > 1:
        sh[0]["first_group"], sh[1]["first_group"] = sh[1]["first_group"], sh[0]["first_group"]
    elif len(sh) > 1:
        sh[0]["name"], sh[1]["name"] = sh[1]["name"], sh[0]["name"]
    save_index(root, obj)
    return False


@kind("index_names")
def index_names(rng: random.Random, root: Path) -> bool:
    """Shard names that are long, odd, hidden, paths, or carry newlines and ANSI codes."""
    obj = load_index(root)
    s = obj["shards"][rng.randrange(len(obj["shards"]))]
    new = rng.choice(["x" * 300 + ".tar", "../" + s["name"], "/etc/passwd", ".hidden.tar", "a\nOK shard-000000.tar",
                      "\x1b[31mred.tar", "a;rm -rf x.tar", "", "é.tar", "nul\x00.tar", "index.json", "."])
    if rng.random() < 0.5 and "\x00" not in new and "/" not in new and new not in ("", ".", "index.json"):
        try:
            os.replace(root / s["name"], root / new)
        except OSError:
            pass
    s["name"] = new
    save_index(root, obj)
    return False


@kind("index_text")
def index_text(rng: random.Random, root: Path) -> bool:
    """Broken JSON text: truncated, deeply nested, not UTF-8, a huge integer, a duplicate key."""
    text = (root / "index.json").read_bytes()
    how = rng.choice(["truncate", "deep", "utf8", "bigint", "empty", "dupkey", "bom"])
    out = {"truncate": text[: rng.randrange(len(text))], "deep": b"[" * 100_000 + b"]" * 100_000, "utf8": text.replace(b'"', b'\xff"', 1),
           "bigint": text.replace(b'"version": 1', b'"version": 1' + b"0" * 5000), "empty": b"",
           "dupkey": text.replace(b'"version": 1', b'"version": 1, "version": 2'), "bom": b"\xef\xbb\xbf" + text}[how]
    (root / "index.json").write_bytes(out)
    return False


@kind("index_benign")
def index_benign(rng: random.Random, root: Path) -> bool:
    """Edits that leave the content alone (class names, mean, source, provenance, unknown keys)."""
    obj = load_index(root)
    how = rng.choice(["names", "mean", "extra", "provenance"])
    if how == "names":
        obj["dataset"]["classes"] = [f"n\x1b[1m{i}" for i in range(len(obj["dataset"]["classes"]))]
    elif how == "mean":
        obj["dataset"]["mean"] = [0.1] * len(obj["dataset"]["mean"])
    elif how == "extra":
        obj["future_field"] = {"a": [1, 2]}
    else:
        obj["provenance"] = {"note": "x" * 1000}
    save_index(root, obj)
    return False
