"""The GPU renderer: one headless EGL OpenGL context per process, streaming frames in bounded chunks.

Per frame: each plan layer's primitive is drawn as a full-screen pass into an 8-bit composite
framebuffer (cleared to the background) with its blend mode; a post pass applies hue rotation and
feedback trails into a ping-pong pair of float textures; an output pass writes that frame, flipped
vertically, into an 8-bit RGBA target, which is read back (RGBA is the readback format GPUs copy
without converting; the flip in the shader saves the CPU a copy).

Readback is double-buffered: the frames of chunk k are read into one of two pixel-buffer objects while
chunk k - 1's buffer is mapped and handed out, so the GPU renders chunk k while the CPU encodes k - 1.

Everything that changes over time comes in as uniforms from :class:`~datagen.visual.drive.DriveIntegrator`
(CPU, deterministic); the shaders hold no clock and no randomness.

Create the Renderer inside the process that uses it (never before a fork: see PLATFORM_NOTES.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import math
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from datagen.visual.drive import DRIVE_NAMES, DRIVE_SCALARS, SHADER_BANDS, DriveIntegrator, check_timeline
from datagen.visual.plan import DEBUG_PRIMITIVES, SHADER_DIR, validate_plan
from datagen.visual.points import POINT_UNIFORMS
from shared.style_features import hue_rotation_matrix
from datagen.visual.shaders import ShaderError, assemble, compile_error

log = logging.getLogger(__name__)
_SPIN, _SIZE, _WARMTH, _GAIN = (DRIVE_NAMES.index(n) for n in ("spin", "size", "warmth", "gain"))

EGL_CUDA_DEVICE_NV = 0x323A


class EGLContextError(RuntimeError):
    """No headless OpenGL 3.3 context could be created through EGL (the message says why)."""


# ----------------------------------------------------------------- device choice (pure + EGL query)


def visible_gpu_ordinal(gpu_index: int | None, cuda_visible_devices: str | None) -> int | None:
    """The CUDA ordinal (as this process sees GPUs) the renderer should use, or None for the default device.

    ``gpu_index`` is an ordinal among the visible GPUs. With no index but a CUDA_VISIBLE_DEVICES
    that lists GPUs (e.g. set by Ray for a task with ``num_gpus``), the first visible GPU is used.
    """
    if gpu_index is not None:
        if gpu_index < 0:
            raise ValueError(f"gpu_index must be >= 0, got {gpu_index}")
        return int(gpu_index)
    cvd = (cuda_visible_devices or "").strip()
    if cvd and cvd not in ("-1", "NoDevFiles"):
        return 0
    return None


def egl_device_for_gpu(ordinal: int | None, egl_cuda_ids: list[int | None]) -> int | None:
    """The EGL device index whose EGL_CUDA_DEVICE_NV equals ``ordinal``.

    NVIDIA's EGL reports each device's CUDA ordinal relative to CUDA_VISIBLE_DEVICES (devices the
    process cannot see report none), so the match is on the visible ordinal. Returns None (the
    default display) when no ordinal is wanted or no EGL device is an NVIDIA GPU (Mesa llvmpipe).
    """
    if ordinal is None or not any(c is not None for c in egl_cuda_ids):
        return None
    for i, cid in enumerate(egl_cuda_ids):
        if cid == ordinal:
            return i
    raise EGLContextError(f"no EGL device belongs to CUDA GPU {ordinal} "
                          f"(EGL devices report CUDA ordinals {egl_cuda_ids})")


def query_egl_cuda_ids() -> list[int | None]:
    """For each EGL device (in EGL's order), its CUDA ordinal, or None (non-NVIDIA device or no query)."""
    name = os.environ.get("GLCONTEXT_LINUX_LIBEGL") or ctypes.util.find_library("EGL")
    if not name:
        return []
    try:
        egl = ctypes.CDLL(name)
    except OSError:
        return []
    egl.eglGetProcAddress.restype = ctypes.c_void_p
    egl.eglGetProcAddress.argtypes = [ctypes.c_char_p]
    addr_devices = egl.eglGetProcAddress(b"eglQueryDevicesEXT")
    addr_attrib = egl.eglGetProcAddress(b"eglQueryDeviceAttribEXT")
    if not addr_devices or not addr_attrib:
        return []
    query_devices = ctypes.CFUNCTYPE(ctypes.c_uint, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p),
                                     ctypes.POINTER(ctypes.c_int))(addr_devices)
    query_attrib = ctypes.CFUNCTYPE(ctypes.c_uint, ctypes.c_void_p, ctypes.c_int,
                                    ctypes.POINTER(ctypes.c_ssize_t))(addr_attrib)
    count = ctypes.c_int(0)
    if not query_devices(0, None, ctypes.byref(count)) or count.value <= 0:
        return []
    devices = (ctypes.c_void_p * count.value)()
    if not query_devices(count.value, devices, ctypes.byref(count)):
        return []
    ids: list[int | None] = []
    for dev in devices[:count.value]:
        value = ctypes.c_ssize_t(-1)
        ok = query_attrib(dev, EGL_CUDA_DEVICE_NV, ctypes.byref(value))
        ids.append(int(value.value) if ok and value.value >= 0 else None)
    return ids


def create_egl_context(gpu_index: int | None = None, egl_device: int | None = None):
    """A standalone moderngl context on EGL (OpenGL >= 3.3), on the EGL device of the assigned GPU.

    ``egl_device`` forces an EGL device index; otherwise it is chosen from ``gpu_index`` /
    CUDA_VISIBLE_DEVICES (NVIDIA) or left to EGL's default (Mesa). GLCONTEXT_DEVICE_INDEX, if set,
    overrides both (glcontext reads it).
    """
    import moderngl

    if egl_device is None:
        ordinal = visible_gpu_ordinal(gpu_index, os.environ.get("CUDA_VISIBLE_DEVICES"))
        ids = query_egl_cuda_ids() if ordinal is not None else []
        egl_device = egl_device_for_gpu(ordinal, ids)
        if ordinal is not None and egl_device is None:
            log.warning("GPU %s requested but no EGL device is an NVIDIA GPU (EGL devices: %s): "
                        "using EGL's default device", ordinal, ids)
    kwargs = {"backend": "egl"}
    if egl_device is not None:
        kwargs["device_index"] = int(egl_device)
    try:
        ctx = moderngl.create_standalone_context(require=330, **kwargs)
    except Exception as e:  # glcontext raises plain Exceptions with EGL's reason
        raise EGLContextError(
            f"could not create a headless OpenGL 3.3 context through EGL (egl device "
            f"{'default' if egl_device is None else egl_device}): {e}. A headless render needs libEGL and "
            f"libGL (Debian: libegl1 libgl1) plus either Mesa (llvmpipe) or the NVIDIA driver's EGL vendor "
            f"library; on a GPU machine check that the GL loader libraries are installed.") from e
    return ctx


# ---------------------------------------------------------------------------------- pure helpers


def layer_transform(augment: dict, spin: float, size: float = 1.0) -> np.ndarray:
    """2x2 map from frame coordinates to primitive coordinates: rotation (static + spin-coupled), zoom, flips,
    and the drive's low-band ``size`` (> 1: the picture is drawn bigger)."""
    a = math.radians(augment.get("rotation_deg", 0.0)) + augment.get("spin_coupling", 0.0) * spin
    c, s = math.cos(a), math.sin(a)
    rot = np.array([[c, -s], [s, c]])
    flip = np.diag([-1.0 if augment.get("flip_x") else 1.0, -1.0 if augment.get("flip_y") else 1.0])
    return rot @ flip / (float(augment.get("zoom", 1.0)) * float(size))


def trail_decay(fps: float, tau_s: float) -> float:
    """Per-frame feedback decay for a trail time constant (0 = off)."""
    return math.exp(-1.0 / (fps * tau_s)) if tau_s > 0 else 0.0


def _gl_mat(m: np.ndarray) -> tuple[float, ...]:
    """numpy (row-major) matrix -> GLSL column-major tuple."""
    return tuple(float(x) for x in np.asarray(m).T.reshape(-1))


# ------------------------------------------------------------------------------------- renderer


class Renderer:
    """Owns one EGL context, a float composite framebuffer and the compiled programs (one per primitive)."""

    def __init__(self, resolution: int, gpu_index: int | None = None, *, egl_device: int | None = None,
                 shader_dir: str | Path | None = None):
        if int(resolution) < 2:
            raise ValueError(f"resolution must be >= 2, got {resolution}")
        self.size = (int(resolution), int(resolution))  # (W, H)
        self.shader_dir = Path(shader_dir) if shader_dir else SHADER_DIR
        import moderngl

        self._mgl = moderngl
        self._pid = os.getpid()
        self.ctx = create_egl_context(gpu_index, egl_device)
        gl = self.ctx.info
        self.info = {"renderer": gl.get("GL_RENDERER", "?"), "vendor": gl.get("GL_VENDOR", "?"),
                     "version": gl.get("GL_VERSION", "?")}
        log.info("OpenGL renderer: %s (%s, %s)", self.info["renderer"], self.info["vendor"], self.info["version"])
        # 8-bit composite: every blend result is clamped to [0, 1] (screen/multiply stay well defined after add).
        self._comp_tex = self.ctx.texture(self.size, 4)
        self._comp_fbo = self.ctx.framebuffer([self._comp_tex])
        # What is read back: the frame flipped to top-row-first, 8-bit RGBA.
        self._out_tex = self.ctx.texture(self.size, 4)
        self._out_fbo = self.ctx.framebuffer([self._out_tex])
        self._programs: dict[str, tuple] = {}
        self._post = self._build(("post.glsl",))
        self._output = self._build(("output.glsl",))

    # -- programs

    def _build(self, fragment_files: tuple[str, ...]) -> tuple:
        vert, vfiles = assemble(self.shader_dir, "fullscreen.vert.glsl")
        frag, ffiles = assemble(self.shader_dir, *fragment_files)
        try:
            prog = self.ctx.program(vertex_shader=vert, fragment_shader=frag)
        except Exception as e:
            stage = "vertex" if "vertex_shader" in str(e) else "compile/link"
            raise compile_error(ffiles if stage != "vertex" else vfiles, stage, str(e)) from None
        vao = self.ctx.vertex_array(prog, [])
        return prog, vao, {name: prog[name] for name in prog if isinstance(prog[name], self._mgl.Uniform)}

    def program(self, primitive: str) -> tuple:
        """The (program, vao, uniforms) of a primitive, compiled on first use and cached."""
        if primitive not in self._programs:
            self._programs[primitive] = self._build((f"{primitive}.glsl", "layer_main.glsl"))
        return self._programs[primitive]

    # -- rendering

    def _check_process(self) -> None:
        if os.getpid() != self._pid:
            raise EGLContextError(f"this Renderer's EGL context was created in process {self._pid} and is used in "
                                  f"process {os.getpid()} (inherited through fork): create the Renderer inside "
                                  f"the worker process that renders")

    def render(self, features: np.ndarray, names: list[str], plan: dict, fps: float,
               chunk_frames: int = 64) -> Iterator[np.ndarray]:
        """Frames for a timeline ``[T, C]``, as uint8 chunks ``[n, H, W, 3]`` (n <= chunk_frames).

        Memory is O(chunk): the drive state is integrated chunk by chunk and frames are read back
        per chunk. Each call has its own trail buffers, so several renders may be interleaved. A chunk
        is the RGB view of a fresh RGBA array (writable, not C-contiguous: ``np.ascontiguousarray`` packs it).
        """
        self._check_process()
        check_timeline(features, names)
        validate_plan(plan)
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
        layers = [(self.program(lay["visualizer"]), lay) for lay in plan["layers"]]  # compile errors first
        return self._frames(features, list(names), plan, layers, float(fps), int(chunk_frames), readback=True)

    def draw_only(self, features: np.ndarray, names: list[str], plan: dict, fps: float) -> int:
        """Render every frame without reading it back (for throughput measurements); returns the count."""
        self._check_process()
        check_timeline(features, names)
        validate_plan(plan)
        layers = [(self.program(lay["visualizer"]), lay) for lay in plan["layers"]]
        n = sum(self._frames(features, list(names), plan, layers, float(fps), 64, readback=False))
        self.ctx.finish()
        return n

    def _frames(self, features, names, plan, layers, fps, chunk_frames, readback):
        w, h = self.size
        style, aug = plan["style"], plan["augment"]
        integrator = DriveIntegrator(fps, style.get("speed", 1.0))
        decay = trail_decay(fps, aug.get("trail_tau_s", 0.0))
        hue_mat = _gl_mat(hue_rotation_matrix(aug.get("hue_rotation_deg", 0.0)))
        bg = tuple(float(x) for x in style["background"])
        # Ping-pong feedback textures, private to this call.
        texs = [self.ctx.texture(self.size, 4, dtype="f2") for _ in range(2)]
        fbos = [self.ctx.framebuffer([t]) for t in texs]
        for fbo in fbos:
            fbo.clear(0.0, 0.0, 0.0, 1.0)
        static = self._style_uniforms(style)
        # Debug primitives are calibrated signals (their colour and size are the label): full gain, no tint.
        calibrated = all(lay["visualizer"] in DEBUG_PRIMITIVES for lay in plan["layers"])
        frame_bytes = w * h * 4  # RGBA
        chunk = min(chunk_frames, max(len(features), 1))
        # Two pixel buffers: chunk k is read into one while chunk k - 1's is mapped (asynchronous on a GPU).
        pbos = [self.ctx.buffer(reserve=frame_bytes * chunk) for _ in range(2)] if readback else []
        pending: tuple[int, int] | None = None  # (buffer index, frames) read but not yet handed out
        cur = 0
        try:
            for k, start in enumerate(range(0, len(features), chunk_frames)):
                drive = integrator.step_chunk(features[start:start + chunk_frames], names)  # (n, D)
                for i, row in enumerate(drive):
                    self._draw_layers(layers, row, static, aug, bg, calibrated)
                    self._draw_post(texs[1 - cur], fbos[cur], hue_mat, decay, 0.0 if calibrated else float(row[_WARMTH]))
                    if readback:
                        self._draw_output(texs[cur])
                        self._out_fbo.read_into(pbos[k % 2], components=4, alignment=1, write_offset=i * frame_bytes)
                    cur = 1 - cur
                if not readback:
                    yield len(drive)
                    continue
                if pending is not None:
                    yield self._take(pbos[pending[0]], pending[1])
                pending = (k % 2, len(drive))
            if pending is not None:
                yield self._take(pbos[pending[0]], pending[1])
        finally:
            for obj in (*fbos, *texs, *pbos):
                obj.release()

    def _take(self, pbo, n: int) -> np.ndarray:
        """Frames ``[n, H, W, 3]`` out of a pixel buffer: one copy into a fresh array, RGB a view of its RGBA."""
        w, h = self.size
        frames = np.empty((n, h, w, 4), np.uint8)
        pbo.read_into(frames, size=frames.nbytes)
        return frames[..., :3]

    def _style_uniforms(self, style: dict) -> dict:
        pal = style["palette"]
        return {"u_res": (float(self.size[0]), float(self.size[1])),
                "u_pal_a": tuple(pal["a"]), "u_pal_b": tuple(pal["b"]), "u_pal_c": tuple(pal["c"]),
                "u_pal_d": tuple(pal["d"]), "u_symmetry": float(style["symmetry"]),
                "u_line_width": float(style["line_width"]), "u_detail": float(style["detail"])}

    def _draw_layers(self, layers, row: np.ndarray, static: dict, aug: dict, bg: tuple, calibrated: bool) -> None:
        mgl, ctx = self._mgl, self.ctx
        values = dict(static)
        for j, name in enumerate(DRIVE_SCALARS):
            values[f"u_{name}"] = float(row[j])
        values["u_bands"] = tuple(float(x) for x in row[len(DRIVE_SCALARS):len(DRIVE_SCALARS) + SHADER_BANDS])
        values["u_xform"] = _gl_mat(layer_transform(aug, float(row[_SPIN]), 1.0 if calibrated else float(row[_SIZE])))
        self._comp_fbo.use()
        self._comp_fbo.clear(*bg, 1.0)
        ctx.enable(mgl.BLEND)
        ctx.blend_equation = mgl.FUNC_ADD
        for (prog, vao, uniforms), lay in layers:
            values["u_opacity"] = float(lay.get("opacity", 1.0))
            values["u_hue"] = float(lay.get("hue_offset", 0.0))
            values["u_seed"] = float(lay.get("seed", 0.0))
            values["u_multiply"] = 1 if lay["blend"] == "multiply" else 0
            values["u_gain"] = 1.0 if lay["visualizer"] in DEBUG_PRIMITIVES else float(row[_GAIN])
            points = POINT_UNIFORMS.get(lay["visualizer"])
            if points is not None:  # CPU-integrated point set of this primitive
                arr = points[1](row, values["u_seed"], values["u_line_width"])
                uniforms[points[0]].write(arr[:uniforms[points[0]].array_length].tobytes())
            for name, uniform in uniforms.items():
                if name == "u_bands":  # the compiler may shrink an array to the entries a shader reads
                    uniform.value = values[name][:uniform.array_length]
                elif name in values:
                    uniform.value = values[name]
            ctx.blend_func = {"alpha": (mgl.ONE, mgl.ONE_MINUS_SRC_ALPHA),   # premultiplied over
                              "add": (mgl.ONE, mgl.ONE),
                              "screen": (mgl.ONE_MINUS_DST_COLOR, mgl.ONE),  # src (1 - dst) + dst
                              "multiply": (mgl.ZERO, mgl.SRC_COLOR)}[lay["blend"]]
            vao.render(mgl.TRIANGLES, vertices=3)
        ctx.disable(mgl.BLEND)

    def _draw_post(self, prev_tex, out_fbo, hue_mat, decay: float, warmth: float) -> None:
        prog, vao, uniforms = self._post
        out_fbo.use()
        self._comp_tex.use(0)
        prev_tex.use(1)
        uniforms["u_comp"].value = 0
        uniforms["u_prev"].value = 1
        uniforms["u_hue_mat"].value = hue_mat
        uniforms["u_decay"].value = float(decay)
        uniforms["u_warmth"].value = warmth
        vao.render(self._mgl.TRIANGLES, vertices=3)

    def _draw_output(self, frame_tex) -> None:
        prog, vao, uniforms = self._output
        self._out_fbo.use()
        frame_tex.use(0)
        uniforms["u_frame"].value = 0
        vao.render(self._mgl.TRIANGLES, vertices=3)

    def release(self) -> None:
        """Free the GL objects and the context."""
        for prog, vao, _ in (*self._programs.values(), self._post, self._output):
            vao.release()
            prog.release()
        self._programs.clear()
        self.ctx.release()

    def __enter__(self) -> "Renderer":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
