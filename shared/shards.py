"""The shard format: the one module that writes and reads WebDataset tar shards.

Pixel shard sample (ARCHITECTURE.md, "Paths"), members in this fixed order::

    {key}.audio.flac       mono FLAC, PCM_16
    {key}.timeline.npy     float32 [T, C], raw features (np.save)
    {key}.f0000.jpg ...    one 4:2:0 JPEG per frame, so a snippet decodes only its frames
    {key}.meta.json        sorted-key JSON (schema version, seed, variant, segments, ...)

Latent shard sample: ``latents.npy`` (fp16 [T, C, h, w]), ``latents_std.npy``,
``timeline.npy``, ``meta.json``.

Tars are byte-for-byte reproducible: every member has mtime 0, uid/gid 0,
empty user/group names and mode 0o644, and members are written in the order
given. A shard is written as ``<final>.partial`` and renamed on close: the final
name is the completion marker, and a failed writer leaves no final file.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import re
import sys
import tarfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

SCHEMA_VERSION = 1
PARTIAL_SUFFIX = ".partial"

# Member suffixes (the part after "{key}.").
AUDIO = "audio.flac"
TIMELINE = "timeline.npy"
META = "meta.json"
STEMS = "stems.npz"
LATENTS = "latents.npy"
LATENTS_STD = "latents_std.npy"
FRAME_PREFIX = "f"
FRAME_EXT = ".jpg"


# ------------------------------------------------------------------ names


def sample_key(shard: int, sample: int) -> str:
    """``__key__`` of a sample: ``{shard:06d}-{sample:05d}`` (no dots: webdataset splits keys at the first dot)."""
    if shard < 0 or sample < 0:
        raise ValueError(f"shard and sample indices must be >= 0 (got {shard}, {sample})")
    return f"{shard:06d}-{sample:05d}"


def frame_member(i: int) -> str:
    """Suffix of frame ``i``'s JPEG member: ``f0000.jpg``."""
    if i < 0:
        raise ValueError(f"frame index must be >= 0 (got {i})")
    return f"{FRAME_PREFIX}{i:04d}{FRAME_EXT}"


def is_frame_member(suffix: str) -> bool:
    return suffix.startswith(FRAME_PREFIX) and suffix.endswith(FRAME_EXT) and suffix[1:-len(FRAME_EXT)].isdigit()


def frame_index(suffix: str) -> int:
    """Inverse of :func:`frame_member`."""
    if not is_frame_member(suffix):
        raise ValueError(f"not a frame member: {suffix!r}")
    return int(suffix[1:-len(FRAME_EXT)])


def shard_name(index: int) -> str:
    """File name of shard ``index``: ``shard-000000.tar``."""
    return f"shard-{index:06d}.tar"


def shard_index(name: str | os.PathLike) -> int:
    """Inverse of :func:`shard_name` (accepts a path; ignores a ``.partial`` suffix)."""
    base = Path(name).name
    if base.endswith(PARTIAL_SUFFIX):
        base = base[: -len(PARTIAL_SUFFIX)]
    if not (base.startswith("shard-") and base.endswith(".tar") and base[6:-4].isdigit()):
        raise ValueError(f"not a shard file name: {name!s} (expected shard-NNNNNN.tar)")
    return int(base[6:-4])


def split_key(member_name: str) -> tuple[str, str]:
    """``"000000-00001.f0003.jpg"`` -> ``("000000-00001", "f0003.jpg")`` (split at the first dot, as webdataset does)."""
    dirname, base = os.path.split(member_name)
    if "." not in base:
        raise ValueError(f"tar member {member_name!r} has no suffix")
    key, suffix = base.split(".", 1)
    return (f"{dirname}/{key}" if dirname else key), suffix


# --------------------------------------------------------------- encoding


def encode_timeline(features: np.ndarray) -> bytes:
    """float32 ``[T, C]`` -> ``.npy`` bytes (also used for latents: the dtype is kept as given)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(features), allow_pickle=False)
    return buf.getvalue()


def decode_timeline(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


encode_npy = encode_timeline
decode_npy = decode_timeline


def quantize_pcm16(wave: np.ndarray) -> np.ndarray:
    """What a PCM_16 FLAC round trip does to float audio: ``rint(x * 32768)`` clipped to int16, over 32768.

    Compute a stored timeline from this (not from the float wave) so that the
    timeline equals a fresh computation on the decoded audio exactly.
    """
    q = np.clip(np.rint(np.asarray(wave, dtype=np.float32) * np.float32(32768.0)), -32768, 32767)
    return (q / np.float32(32768.0)).astype(np.float32)


def encode_flac(wave: np.ndarray, sr: int) -> bytes:
    """Mono float32 ``[N]`` -> FLAC PCM_16 bytes (deterministic for a given libsndfile)."""
    import soundfile as sf

    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"encode_flac expects mono audio [N], got shape {wave.shape}")
    buf = io.BytesIO()
    sf.write(buf, wave, int(sr), format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def decode_flac(data: bytes) -> tuple[np.ndarray, int]:
    """FLAC bytes -> (mono float32 ``[N]``, sample rate)."""
    import soundfile as sf

    wave, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    if wave.ndim != 1:
        wave = wave.mean(axis=1).astype(np.float32)
    return wave, int(sr)


def encode_jpeg(frame: np.ndarray, quality: int) -> bytes:
    """uint8 ``[H, W, 3]`` -> 4:2:0 JPEG bytes (simplejpeg; its default would be 4:4:4)."""
    import simplejpeg

    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"encode_jpeg expects uint8 [H, W, 3], got {frame.dtype} {frame.shape}")
    return simplejpeg.encode_jpeg(np.ascontiguousarray(frame), quality=int(quality), colorspace="RGB",
                                  colorsubsampling="420")


def decode_jpeg(data: bytes) -> np.ndarray:
    """JPEG bytes -> uint8 ``[H, W, 3]``."""
    import simplejpeg

    return simplejpeg.decode_jpeg(data, colorspace="RGB")


def encode_json(obj: Any) -> bytes:
    """Sorted-key compact UTF-8 JSON (stable bytes for equal objects)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def decode_json(data: bytes) -> Any:
    return json.loads(data.decode("utf-8"))


def pixel_members(wave: np.ndarray, sr: int, timeline: np.ndarray, jpeg_frames: Iterable[bytes],
                  meta: dict[str, Any], stems: dict[str, np.ndarray] | None = None) -> list[tuple[str, bytes]]:
    """The members of one pixel sample, in the fixed order (frames already JPEG-encoded)."""
    members: list[tuple[str, bytes]] = [(AUDIO, encode_flac(wave, sr)), (TIMELINE, encode_timeline(timeline))]
    members += [(frame_member(i), jpg) for i, jpg in enumerate(jpeg_frames)]
    if stems is not None:
        buf = io.BytesIO()
        np.savez_compressed(buf, **{k: np.asarray(v, dtype=np.float16) for k, v in sorted(stems.items())})
        members.append((STEMS, buf.getvalue()))
    members.append((META, encode_json(meta)))
    return members


def latent_members(latents: np.ndarray, latents_std: np.ndarray, timeline: np.ndarray,
                   meta: dict[str, Any]) -> list[tuple[str, bytes]]:
    """The members of one latent sample: fp16 ``[T, C, h, w]`` means and stds, the timeline, meta."""
    return [
        (LATENTS, encode_npy(np.asarray(latents, dtype=np.float16))),
        (LATENTS_STD, encode_npy(np.asarray(latents_std, dtype=np.float16))),
        (TIMELINE, encode_timeline(np.asarray(timeline, dtype=np.float32))),
        (META, encode_json(meta)),
    ]


# ------------------------------------------------------------------ writer


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o644
    info.type = tarfile.REGTYPE
    return info


_USTAR_NAME, _USTAR_SIZE, _USTAR_CHKSUM = slice(0, 100), slice(124, 136), slice(148, 155)


def _member_header(name: str, size: int) -> bytes:
    """The USTAR header ``TarInfo.tobuf(USTAR_FORMAT)`` gives the :func:`_tarinfo` of a member, byte for byte,
    filled into a cached template (only name, size and checksum vary); long names or huge sizes go through tobuf.

    Checksum (POSIX ustar): 256 (the checksum field counted as 8 spaces) plus every other header byte, written
    as 6 octal digits and a NUL, the field's 8th byte staying a space, as tarfile writes it.
    """
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) > 100 or size >= 8 ** 11:
        return _tarinfo(name, size).tobuf(tarfile.USTAR_FORMAT)
    template, rest = _header_template()
    h = bytearray(template)
    h[:len(raw)] = raw
    h[_USTAR_SIZE] = b"%011o\0" % size
    h[_USTAR_CHKSUM] = b"%06o\0" % (rest + sum(raw) + sum(h[_USTAR_SIZE]))
    return bytes(h)


@functools.lru_cache(maxsize=1)
def _header_template() -> tuple[bytes, int]:
    """tobuf's header of an empty-named, empty member, and 256 + its byte sum outside name, size and checksum."""
    h = _tarinfo("", 0).tobuf(tarfile.USTAR_FORMAT)
    return h, 256 + sum(h) - sum(h[_USTAR_NAME]) - sum(h[_USTAR_SIZE]) - sum(h[148:156])


class ShardWriter:
    """Write one deterministic tar shard to ``final_path + ".partial"``; :meth:`close` renames it.

    Use as a context manager: on an exception the partial file is removed and no
    file with the final name appears. A full disk raises :class:`shared.errors.DiskFullError`
    naming the shard (the partial file removed first). ``before_commit``, when given, is called just before the
    rename; if it raises, the partial file is removed and no final file appears (datagen's workers check there
    that the run that owns the output directory is still alive).
    """

    def __init__(self, final_path: str | os.PathLike, before_commit: Callable[[], None] | None = None):
        self.final_path = Path(final_path)
        self.before_commit = before_commit
        self.partial_path = Path(str(self.final_path) + PARTIAL_SUFFIX)
        self.final_path.parent.mkdir(parents=True, exist_ok=True)
        self.closed = False
        with self._disk_full_named():
            self._file = open(self.partial_path, "wb")
        # The tar framing is written here, byte for byte what tarfile.TarFile writes (headers from
        # TarInfo.tobuf, 512-byte blocks, two zero blocks and a 10240-byte record at the end), without its
        # per-member copies: a sample has one member per frame. USTAR: no pax headers (they would carry
        # varying fields); names here are short.
        self._offset = 0
        self._keys: set[str] = set()
        self.n_samples = 0

    @contextlib.contextmanager
    def _disk_full_named(self) -> Iterator[None]:
        """ENOSPC while writing: drop the partial file, raise DiskFullError naming the shard."""
        from shared.errors import DiskFullError
        from shared.fsutil import is_enospc

        try:
            yield
        except OSError as e:
            if not is_enospc(e):
                raise
            if hasattr(self, "_file"):
                self.abort()
            raise DiskFullError(f"{self.final_path}: no space left on device") from e

    def add_sample(self, key: str, members: Iterable[tuple[str, bytes]]) -> None:
        if self.closed:
            raise RuntimeError(f"ShardWriter for {self.final_path} is closed")
        if not key or "." in key or "/" in key:
            raise ValueError(f"sample key {key!r} must be non-empty and contain no '.' or '/'")
        if key in self._keys:
            raise ValueError(f"duplicate sample key {key!r} in {self.final_path}")
        seen: set[str] = set()
        with self._disk_full_named():
            for suffix, data in members:
                if suffix in seen:
                    raise ValueError(f"duplicate member {key}.{suffix}")
                seen.add(suffix)
                header = _member_header(f"{key}.{suffix}", len(data))
                pad = -len(data) % tarfile.BLOCKSIZE  # data is padded to whole blocks
                self._file.write(header)
                self._file.write(data)
                self._file.write(b"\0" * pad)
                self._offset += len(header) + len(data) + pad
        self._keys.add(key)
        self.n_samples += 1

    def close(self) -> Path:
        """Finish the tar, fsync, and rename to the final name (the completion marker)."""
        if self.closed:
            return self.final_path
        with self._disk_full_named():
            end = 2 * tarfile.BLOCKSIZE  # end of archive: two zero blocks, then zeros up to a whole record
            self._file.write(b"\0" * (end + -(self._offset + end) % tarfile.RECORDSIZE))
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        if self.before_commit is not None:
            try:
                self.before_commit()
            except BaseException:
                self.partial_path.unlink(missing_ok=True)
                self.closed = True
                raise
        os.replace(self.partial_path, self.final_path)
        self.closed = True
        return self.final_path

    def abort(self) -> None:
        """Drop the partial file; no final file is written."""
        if self.closed:
            return
        try:
            self._file.close()
        except OSError:  # flushing the rest failed (a full disk): the file is being discarded anyway
            pass
        self.partial_path.unlink(missing_ok=True)
        self.closed = True

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


# ------------------------------------------------------------------ reading


def iter_tar_samples(path: str | os.PathLike) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yield ``(key, {suffix: bytes})`` per sample in file order (plain tarfile; for inspect and tests).

    Members of one sample must be contiguous, as webdataset expects.
    """
    key: str | None = None
    members: dict[str, bytes] = {}
    done: set[str] = set()
    with tarfile.open(path, mode="r:") as tar:
        for info in tar:
            if not info.isfile():
                continue
            k, suffix = split_key(info.name)
            if k != key:
                if key is not None:
                    yield key, members
                    done.add(key)
                if k in done:
                    raise ValueError(f"{path}: members of sample {k!r} are not contiguous")
                key, members = k, {}
            f = tar.extractfile(info)
            members[suffix] = f.read() if f is not None else b""
    if key is not None:
        yield key, members


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file, read in 1 MiB blocks (the checksum manifests record)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def frame_suffixes(members: dict[str, Any]) -> list[str]:
    """The frame member suffixes of a sample, in frame order."""
    return sorted((s for s in members if is_frame_member(s)), key=frame_index)


def decode_pixel_sample(members: dict[str, bytes]) -> dict[str, Any]:
    """Decode every member of a pixel sample: ``wave, sr, timeline, frames [T, H, W, 3], meta``."""
    missing = [m for m in (AUDIO, TIMELINE, META) if m not in members]
    if missing:
        raise ValueError(f"missing members: {', '.join(missing)}")
    wave, sr = decode_flac(members[AUDIO])
    frames = [decode_jpeg(members[s]) for s in frame_suffixes(members)]
    return {
        "wave": wave,
        "sr": sr,
        "timeline": decode_timeline(members[TIMELINE]),
        "frames": np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8),
        "meta": decode_json(members[META]),
    }


# ------------------------------------------------------------ shard sets

MANIFEST_NAME = "manifest.json"
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://|^pipe:")


def is_url(spec: str) -> bool:
    """Whether a shard spec is a URL webdataset opens (``scheme://`` or ``pipe:``), not a local path."""
    return bool(_URL.match(str(spec)))

SIBLINGS = "val_siblings"  # style-sibling groups (datagen/shard_job.py): the val split's audio under several visual plans
SPLITS = ("train", "val", SIBLINGS)  # the split folders of a shard set
VARIANTS = ("normal", "silence", "debug")  # a clip's meta.json "variant", in report order (normal music first)
_warned_unchecked: set[str] = set()


def shard_set_root(spec: str | os.PathLike) -> Path | None:
    """The directory whose ``manifest.json`` describes the shards of ``spec`` (a set dir or one of its split
    dirs), or None when ``spec`` is a glob, URL, brace pattern or a directory without a manifest."""
    s = str(spec)
    if "://" in s or any(c in s for c in "*?[{"):
        return None
    p = Path(s)
    for d in (p, p.parent):
        if d.is_dir() and (d / MANIFEST_NAME).is_file():
            return d
    return None


def shard_fingerprints(root: str | os.PathLike) -> dict[str, str | None]:
    """``{split/shard name: content id}`` for every finished shard on disk under ``root``, from its manifest.

    Pixel manifests (``datagen run``) list ``shards`` entries with the ``content_id`` of the config and code
    versions that made them; latent manifests (``cache-latents``) list per split records with a
    ``content_id`` naming the pixel content and the VAE checkpoint. A shard on disk that the manifest does
    not list maps to None. Entries from before content ids were recorded inherit the manifest's own.
    """
    root = Path(root)
    try:
        doc = json.loads((root / MANIFEST_NAME).read_text())
    except (OSError, ValueError) as e:
        from shared.errors import DataError

        raise DataError(f"{root / MANIFEST_NAME}: unreadable manifest ({type(e).__name__}: {e})") from None
    default = doc.get("content_id", "unrecorded")
    listed: dict[str, str] = {}
    if isinstance(doc.get("shards"), dict):  # pixel manifest
        for rel, entry in doc["shards"].items():
            listed[rel] = entry.get("content_id", default)
    for split, records in (doc.get("splits") or {}).items():  # latent manifest
        if isinstance(records, list):
            for r in records:
                listed[f"{split}/{r['name']}"] = r.get("content_id", default)
    out: dict[str, str | None] = {}
    for split in SPLITS:
        for p in sorted((root / split).glob("shard-*.tar")):
            rel = f"{split}/{p.name}"
            out[rel] = listed.get(rel)
    return out


def check_shard_set(spec: str | os.PathLike) -> None:
    """Refuse a shard set whose shards come from different content fingerprints (or are not in its manifest).

    ``spec`` is what the loaders take (a set dir, a split dir, a glob, a URL). Raises
    :class:`shared.errors.DataError` naming each fingerprint with a shard of it; for inputs without a
    manifest (globs, URLs, bare dirs) prints a warning, once per spec, that nothing can be checked.
    """
    root = shard_set_root(spec)
    if root is None:
        if str(spec) not in _warned_unchecked:
            _warned_unchecked.add(str(spec))
            print(f"warning: {spec}: no manifest.json to check that its shards come from one content fingerprint "
                  "(config, code version, VAE); nothing is checked", file=sys.stderr)
        return
    groups: dict[str | None, list[str]] = {}
    for rel, cid in shard_fingerprints(root).items():
        groups.setdefault(cid, []).append(rel)
    if len(groups) > 1:
        from shared.errors import DataError

        parts = [f"{'not in manifest.json' if cid is None else cid} ({len(rels)} shards, e.g. {rels[0]})"
                 for cid, rels in sorted(groups.items(), key=lambda kv: (kv[0] is None, str(kv[0])))]
        raise DataError(f"{root}: shards from {len(groups)} different content fingerprints: {'; '.join(parts)}; "
                        "regenerate it (`datagen run --force` / `trainer cache-latents --force`) or move the odd "
                        "shards away")
