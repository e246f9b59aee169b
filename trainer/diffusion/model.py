"""The denoiser: a DiT-style space-time transformer over latent patches of a whole snippet.

Token grid, per snippet: ``T = P + F`` frames (P previous clean frames first, then the F noisy snippet
frames) by ``1 + N`` tokens per frame (one conditioning token, then ``N = (h/p)(w/p)`` latent patches).
The conditioning token of a snippet frame is that frame's audio token (the audio encoder over its
(2k+1)-frame context window plus the explicit ``is_silent`` channel); it is also *added* to the frame's
patch tokens, so audio reaches every patch twice: additively and through attention. Previous frames
carry a learned marker token in that slot.

Each block is factorised attention (Latte / ViViT "model 3" style): spatial attention inside each frame
over its 1 + N tokens, then temporal attention across the T frames at each token position, then an MLP;
every sub-layer is modulated by adaLN-Zero (Peebles & Xie 2023, DiT §3.2) from one vector per snippet:
timestep + style + pooled audio. Attention is ``F.scaled_dot_product_attention``.

Shape knob ``diffusion.cond_token_in_spatial`` (default true: the layout above, which every existing
checkpoint has). False leaves the conditioning token out: spatial attention runs over the N patches only, so
its length is a multiple of 128 at the production shape (N = 256) and fills whole flash-attention tiles
(257 wastes almost half of the last one). Audio still reaches every patch: added to the patch tokens, in
the pooled adaLN vector, and through temporal attention.

Speed: under bf16 autocast the residual stream stays bf16 (the fp32 position tables are cast to the
activation dtype before they are added, else they promote every block's elementwise traffic to fp32);
LayerNorm still computes in fp32 inside autocast. Everything that depends only on the conditioning is
computed by :meth:`Denoiser.encode_cond`, which a sampler calls once per snippet and reuses at every step
(:meth:`Denoiser.denoise`); ``forward`` is the two in a row.

Conditioning dropout (classifier-free guidance, Ho & Salimans 2022): ``cond["audio_null"]`` swaps every
audio token (and the pooled audio, and is_silent with it: it is an audio feature) for a learned null;
``cond["style_null"]`` swaps the style embedding for a learned null; ``cond["prev_valid"]`` False swaps a
previous frame for a learned null frame. The training loss decides who is dropped; the model only obeys.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from shared.config import Config
from trainer.conditioning import Cond, ConditioningSpec
from trainer.style import style_input_dim


def timestep_embedding(x: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of a real-valued tensor (..., ) -> (..., dim) (Vaswani et al. 2017, §3.5)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=x.device, dtype=torch.float32) / half)
    args = x.float()[..., None] * freqs
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: ``x * (1 + scale) + shift`` with per-snippet shift/scale (B, D) broadcast over tokens."""
    return x * (1 + scale[:, None, None, :]) + shift[:, None, None, :]


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, T, C, h, w) -> (B, T, N, C*p*p), N = (h/p)(w/p), patches in row-major order."""
    b, t, c, h, w = x.shape
    x = x.reshape(b, t, c, h // p, p, w // p, p)
    return x.permute(0, 1, 3, 5, 2, 4, 6).reshape(b, t, (h // p) * (w // p), c * p * p)


def unpatchify(x: torch.Tensor, p: int, c: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: (B, T, N, C*p*p) -> (B, T, C, h, w)."""
    b, t = x.shape[:2]
    x = x.reshape(b, t, h // p, w // p, c, p, p)
    return x.permute(0, 1, 4, 2, 5, 3, 6).reshape(b, t, c, h, w)


# CUDA's grid limit: SDPA's flash and memory-efficient kernels put the batch (and the heads) on a grid axis of at
# most 65535 blocks, and fail beyond it with "CUDA error: invalid configuration argument" (pytorch/pytorch#146704,
# #142228). Flash attention's backward also overflows a 32-bit index once batch * heads * round_up(L, 128) *
# max(head_dim, 32) exceeds 2**31 ("illegal memory access"; PriorLabs/TabPFN#1184 measured the bound). Temporal
# attention runs over B' = B * N rows (B * 256 at the production shape, twice that with the shuffle pass), so
# large batches reach both bounds: :func:`sdpa_rows_per_call` splits the rows, which is exact (rows are independent).
SDPA_MAX_GRID = 65535
SDPA_MAX_INDEX = 2 ** 31


def sdpa_rows_per_call(rows: int, heads: int, length: int, head_dim: int) -> int:
    """The most batch rows one ``scaled_dot_product_attention`` call may take within both CUDA bounds above."""
    per_row = heads * (-(-length // 128) * 128) * max(head_dim, 32)
    return max(1, min(rows, SDPA_MAX_GRID, SDPA_MAX_INDEX // per_row))


def chunked_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` over (B', heads, L, d), in row chunks of :func:`sdpa_rows_per_call`."""
    rows, heads, length, head_dim = q.shape
    step = sdpa_rows_per_call(rows, heads, length, head_dim)
    if step >= rows:
        return F.scaled_dot_product_attention(q, k, v)
    return torch.cat([F.scaled_dot_product_attention(q[i:i + step], k[i:i + step], v[i:i + step])
                      for i in range(0, rows, step)])


class Attention(nn.Module):
    """Multi-head self-attention over the second-to-last axis of (B', L, D), via scaled_dot_product_attention."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = chunked_sdpa(q, k, v)  # (B', heads, L, d/heads)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class SpaceTimeBlock(nn.Module):
    """Spatial attention within frames, temporal attention across frames, MLP; each adaLN-Zero modulated."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm_s = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn_s = Attention(dim, heads)
        self.norm_t = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn_t = Attention(dim, heads)
        self.norm_m = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 9 * dim))  # zero-initialised: block starts as identity

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        b, t, n, d = x.shape  # (B, T, 1+N, D)
        sh_s, sc_s, g_s, sh_t, sc_t, g_t, sh_m, sc_m, g_m = self.ada(c).chunk(9, dim=-1)  # each (B, D)
        h = modulate(self.norm_s(x), sh_s, sc_s).reshape(b * t, n, d)
        x = x + g_s[:, None, None, :] * self.attn_s(h).reshape(b, t, n, d)
        h = modulate(self.norm_t(x), sh_t, sc_t).transpose(1, 2).reshape(b * n, t, d)
        x = x + g_t[:, None, None, :] * self.attn_t(h).reshape(b, n, t, d).transpose(1, 2)
        x = x + g_m[:, None, None, :] * self.mlp(modulate(self.norm_m(x), sh_m, sc_m))
        return x


class AudioEncoder(nn.Module):
    """Per-frame audio token from the frame's (2k+1)-frame timeline window and its is_silent flag.

    Raw features span very different ranges (log RMS in dBFS down to -100, linear amplitudes near 0),
    and per-clip z-scoring is off by default to keep absolute loudness (postmortem §3). ``asinh`` is a
    fixed, monotone squash that keeps sign and absolute level while taming the range, so no statistics
    are needed. ``is_silent`` gets its own projection so the silence cue is explicit (postmortem step 5).
    """

    def __init__(self, window: int, channels: int, dim: int):
        super().__init__()
        self.window, self.channels = window, channels
        self.mlp = nn.Sequential(nn.Linear(window * channels, dim), nn.SiLU(), nn.Linear(dim, dim), nn.SiLU(),
                                 nn.Linear(dim, dim))
        self.silent = nn.Linear(1, dim)

    def forward(self, audio: torch.Tensor, is_silent: torch.Tensor) -> torch.Tensor:
        b, f = audio.shape[:2]  # audio (B, F, 2k+1, Ch), is_silent (B, F)
        feats = torch.asinh(audio.float()).reshape(b, f, self.window * self.channels)
        return self.mlp(feats) + self.silent(is_silent.float()[..., None])  # (B, F, D)


class StyleEncoder(nn.Module):
    """A few clean latents of the clip (B, S, C, h, w) -> Gaussian posterior (mu, logvar) over the style latent."""

    def __init__(self, in_channels: int, hidden: int, style_dim: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(in_channels, hidden, 3, padding=1), nn.SiLU(),
                                  nn.Conv2d(hidden, hidden, 3, stride=2, padding=1), nn.SiLU())
        self.head = nn.Linear(hidden, 2 * style_dim)

    def forward(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, s = latents.shape[:2]
        h = self.conv(latents.flatten(0, 1).float())  # (B*S, hidden, h', w')
        pooled = h.mean(dim=(2, 3)).reshape(b, s, -1).mean(dim=1)  # (B, hidden): order-free over the S latents
        mu, logvar = self.head(pooled).chunk(2, dim=-1)
        return mu, logvar.clamp(-10.0, 10.0)


def style_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample (Kingma & Welling 2014, appendix B): (B, S) -> (B,)."""
    return style_kl_per_dim(mu, logvar).sum(dim=-1)


def style_kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu_j, exp(logvar_j)) || N(0, 1)) of each latent dimension j (same source): (B, S) -> (B, S)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def style_kl_free_bits(mu: torch.Tensor, logvar: torch.Tensor, free_bits: float) -> torch.Tensor:
    """The style KL with a "free bits" floor per latent dimension (Kingma et al. 2016, "Improved variational
    inference with inverse autoregressive flow", eq. 15): ``sum_j max(lambda, mean_batch KL_j)`` (a scalar).

    The KL of each dimension j is averaged over the batch first, then floored at ``free_bits`` = lambda nats, as in
    the paper (the floor acts on the minibatch average, not per sample). A dimension whose average KL is under the
    floor contributes the constant lambda, so it gets no gradient toward the prior: the encoder may use up to lambda
    nats in it for free, which keeps the posterior from collapsing onto N(0, I). ``free_bits = 0`` is exactly
    ``style_kl(mu, logvar).mean()`` (each dimension's KL is >= 0). (B, S) -> ().
    """
    if free_bits < 0:
        raise ValueError(f"free_bits must be >= 0, got {free_bits}")
    if free_bits == 0:
        return style_kl(mu, logvar).mean()  # today's term, bit for bit
    per_dim = style_kl_per_dim(mu, logvar).mean(dim=0)  # (S,) batch-mean KL per dimension
    return per_dim.clamp(min=free_bits).sum()


class Denoiser(nn.Module):
    """``Denoiser(cfg, latent_channels, latent_size, n_audio_channels)``; ``model(x_t, t, cond) -> prediction``.

    ``x_t`` (B, F, C, h, w) noisy latents; ``t`` (B,) diffusion time in [0, 1] (schedule.py); ``cond`` a dict
    as built by :meth:`make_cond`. The prediction has the shape of ``x_t`` and is in the parametrisation
    ``cfg.diffusion.prediction`` (v by default).
    """

    def __init__(self, cfg: Config, latent_channels: int, latent_size: int | tuple[int, int], n_audio_channels: int):
        super().__init__()
        d = cfg.diffusion
        h, w = (latent_size, latent_size) if isinstance(latent_size, int) else latent_size
        if h % d.patch_size or w % d.patch_size:
            raise ValueError(f"latent size {h}x{w} is not divisible by diffusion.patch_size={d.patch_size}")
        if d.width % d.heads:
            raise ValueError(f"diffusion.width={d.width} is not divisible by diffusion.heads={d.heads}")
        self.c, self.h, self.w, self.p = latent_channels, h, w, d.patch_size
        self.frames, self.prev_frames = d.snippet_frames, d.prev_frames
        self.window = ConditioningSpec.from_config(cfg).window  # k past + the frame + f future (2k+1 by default)
        self.n_audio_channels = n_audio_channels
        self.prediction = d.prediction
        self.cond_token = d.cond_token_in_spatial  # one conditioning token before the patches of every frame
        dim = d.width
        n_patches = (h // self.p) * (w // self.p)
        patch_in = latent_channels * self.p * self.p

        self.patch_embed = nn.Linear(patch_in, dim)
        self.prev_embed = nn.Linear(patch_in, dim)
        self.pos_space = nn.Parameter(torch.zeros(1, 1, int(self.cond_token) + n_patches, dim))
        self.pos_time = nn.Parameter(torch.zeros(1, self.prev_frames + self.frames, 1, dim))
        self.frame_index_mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

        self.audio_encoder = AudioEncoder(self.window, n_audio_channels, dim)
        self.audio_pool = nn.Linear(dim, dim)
        self.null_audio = nn.Parameter(torch.zeros(dim))  # CFG: the "no audio" token
        self.prev_marker = nn.Parameter(torch.zeros(dim))  # the conditioning slot of previous frames (unused without it)
        self.null_prev = nn.Parameter(torch.zeros(dim))  # replaces a dropped / absent previous frame

        # posterior: a learned style latent (encoder + KL); plan: the teacher's plan features, no encoder (trainer/style.py)
        self.style_source = d.style_source
        self.style_dim = style_input_dim(cfg)
        self.style_encoder = StyleEncoder(latent_channels, min(dim, 128), d.style_dim) if d.style_source == "posterior" else None
        self.style_proj = nn.Sequential(nn.Linear(self.style_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.null_style = nn.Parameter(torch.zeros(dim))

        self.blocks = nn.ModuleList([SpaceTimeBlock(dim, d.heads) for _ in range(d.depth)])
        self.final_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.final = nn.Linear(dim, patch_in)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for p in (self.pos_space, self.pos_time, self.null_audio, self.prev_marker, self.null_prev, self.null_style):
            nn.init.normal_(p, std=0.02)
        # adaLN-Zero (DiT §3.2): every block and the output layer start as the identity / zero.
        for blk in self.blocks:
            nn.init.zeros_(blk.ada[-1].weight)
            nn.init.zeros_(blk.ada[-1].bias)
        for m in (self.final_ada[-1], self.final):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------ conditioning

    def encode_style(self, style_latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S, C, h, w) clean latents of the clip -> posterior (mu, logvar), each (B, style_dim)."""
        if self.style_encoder is None:
            raise ValueError("this denoiser has no style encoder: diffusion.style_source=plan takes the teacher's plan")
        if style_latents.dim() != 5 or style_latents.shape[2] != self.c:
            raise ValueError(f"style latents must be (B, S, {self.c}, h, w), got {tuple(style_latents.shape)}")
        return self.style_encoder(style_latents)

    def make_cond(self, audio: torch.Tensor, is_silent: torch.Tensor, frame_index: torch.Tensor,
                  prev: torch.Tensor | None = None, prev_valid: torch.Tensor | None = None,
                  style_z: torch.Tensor | None = None, style_null: torch.Tensor | None = None,
                  audio_null: torch.Tensor | None = None) -> Cond:
        """The conditioning dict the forward pass takes, with defaults for what is absent.

        No ``prev``: every previous frame is marked absent (first snippet, free running). No ``style_z``:
        the learned null style. ``audio_null`` (B,) bool: use the null audio embedding (CFG unconditional).
        """
        b, dev = audio.shape[0], audio.device
        p = self.prev_frames
        if prev is None:
            prev = torch.zeros(b, p, self.c, self.h, self.w, device=dev)
            prev_valid = torch.zeros(b, p, dtype=torch.bool, device=dev)
        elif prev_valid is None:
            prev_valid = torch.ones(b, p, dtype=torch.bool, device=dev)
        if style_z is None:
            style_z = torch.zeros(b, self.style_dim, device=dev)
            style_null = torch.ones(b, dtype=torch.bool, device=dev)
        return {
            "audio": audio, "is_silent": is_silent.float(), "frame_index": frame_index.long(),
            "prev": prev, "prev_valid": prev_valid.bool(), "style_z": style_z,
            "style_null": (torch.zeros(b, dtype=torch.bool, device=dev) if style_null is None else style_null.bool()),
            "audio_null": (torch.zeros(b, dtype=torch.bool, device=dev) if audio_null is None else audio_null.bool()),
        }

    def _check(self, x_t: torch.Tensor, t: torch.Tensor, cond: Cond) -> None:
        want = (self.frames, self.c, self.h, self.w)
        if x_t.dim() != 5 or tuple(x_t.shape[1:]) != want:
            raise ValueError(f"x_t must be (B, {', '.join(map(str, want))}), got {tuple(x_t.shape)}")
        b = x_t.shape[0]
        if t.shape != (b,):
            raise ValueError(f"t must be ({b},), got {tuple(t.shape)}")
        missing = set(Cond.__required_keys__) - set(cond)
        if missing:
            raise ValueError(f"cond is missing {sorted(missing)} (build it with Denoiser.make_cond)")
        a_want = (b, self.frames, self.window, self.n_audio_channels)
        if tuple(cond["audio"].shape) != a_want:
            raise ValueError(f"cond['audio'] must be {a_want} (B, F, 2k+1, channels), got {tuple(cond['audio'].shape)}")
        p_want = (b, self.prev_frames, self.c, self.h, self.w)
        if tuple(cond["prev"].shape) != p_want:
            raise ValueError(f"cond['prev'] must be {p_want}, got {tuple(cond['prev'].shape)}")

    # ------------------------------------------------------------------ forward

    def encode_cond(self, cond: Cond) -> dict[str, torch.Tensor]:
        """Everything of the forward pass that depends on the conditioning only (not on x_t or t).

        A sampler calls it once per snippet and hands the result to :meth:`denoise` at every step. Keys:
        ``audio_tok`` (B, F, D) the per-frame audio tokens (nulls applied), ``style`` and ``pooled`` (B, D) the
        adaLN vector's style and pooled-audio terms, ``pos_time`` / ``fidx`` (., P+F, 1, D) the frame embeddings,
        and ``prev`` (B, P, S, D) the previous frames' tokens (S = 1 + N with the conditioning token, else N).
        """
        b, p = cond["audio"].shape[0], self.prev_frames
        dim = self.pos_space.shape[-1]

        # Per-frame audio tokens, with the learned null for CFG-dropped samples.
        audio_tok = self.audio_encoder(cond["audio"], cond["is_silent"])  # (B, F, D)
        audio_tok = torch.where(cond["audio_null"][:, None, None], self.null_audio.to(audio_tok.dtype), audio_tok)

        # The adaLN vector's conditioning parts: style and pooled audio (the timestep is added per step).
        style = self.style_proj(cond["style_z"].float())  # (B, D)
        style = torch.where(cond["style_null"][:, None], self.null_style.to(style.dtype), style)
        pooled = self.audio_pool(audio_tok.mean(dim=1))  # (B, D)

        # Frame-index embeddings of the P previous and F snippet frames.
        first = cond["frame_index"][:, :1]  # (B, 1)
        idx = torch.cat([first - p + torch.arange(p, device=first.device), cond["frame_index"]], dim=1)  # (B, P+F)
        fidx = self.frame_index_mlp(timestep_embedding(idx, dim))[:, :, None, :]  # (B, P+F, 1, D)
        dtype = audio_tok.dtype  # the activation dtype (bf16 under autocast): the position tables are cast to it
        enc = {"audio_tok": audio_tok, "style": style, "pooled": pooled, "fidx": fidx.to(dtype),
               "pos_time": self.pos_time.to(dtype)}
        if p:
            pv = self.prev_embed(patchify(cond["prev"], self.p))  # (B, P, N, D)
            pv = torch.where(cond["prev_valid"][:, :, None, None], pv, self.null_prev.to(pv.dtype))
            if self.cond_token:
                pv = torch.cat([self.prev_marker.to(pv.dtype).expand(b, p, 1, dim), pv], dim=2)  # (B, P, 1+N, D)
            enc["prev"] = self._add_positions(pv.to(dtype), enc, slice(0, p))
        return enc

    def _add_positions(self, x: torch.Tensor, enc: dict[str, torch.Tensor], frames: slice) -> torch.Tensor:
        """Add the space, time and frame-index embeddings to tokens (B, n, S, D) of the given frames."""
        return x + self.pos_space.to(x.dtype) + enc["pos_time"][:, frames] + enc["fidx"][:, frames]

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, enc: dict[str, torch.Tensor]) -> torch.Tensor:
        """The prediction for ``x_t`` (B, F, C, h, w) at times ``t`` (B,) given ``enc = encode_cond(cond)``."""
        p, f = self.prev_frames, self.frames
        dim = self.pos_space.shape[-1]
        audio_tok = enc["audio_tok"]
        c = self.time_mlp(timestep_embedding(t * 1000.0, dim)) + enc["style"] + enc["pooled"]  # adaLN vector (B, D)

        # Patch tokens of the noisy frames; each frame also gets its audio token (and frame-index embedding).
        x = self.patch_embed(patchify(x_t, self.p))  # (B, F, N, D)
        x = x.to(audio_tok.dtype) + audio_tok[:, :, None, :]
        if self.cond_token:
            x = torch.cat([audio_tok[:, :, None, :], x], dim=2)  # (B, F, 1+N, D): the audio token is attended too
        x = self._add_positions(x, enc, slice(p, p + f))
        if p:
            x = torch.cat([enc["prev"], x], dim=1)  # (B, P+F, S, D)
        for blk in self.blocks:
            x = blk(x, c)

        shift, scale = self.final_ada(c).chunk(2, dim=-1)
        out = self.final(modulate(self.final_norm(x[:, p:, int(self.cond_token):]), shift, scale))  # (B, F, N, C*p*p)
        return unpatchify(out, self.p, self.c, self.h, self.w)  # (B, F, C, h, w)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: Cond) -> torch.Tensor:
        self._check(x_t, t, cond)
        return self.denoise(x_t, t, self.encode_cond(cond))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

