"""VAE loss terms as pure functions (no pretrained perceptual nets: weights cannot be downloaded here).

``loss = l1 * |x̂ - x| + mse * (x̂ - x)² + edge * |∇x̂ - ∇x| + kl * KL(q(z|x) || N(0, I))``, every
term a mean over elements. Images are in [-1, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def image_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences along width and height: ``(B, C, H, W-1), (B, C, H-1, W)``."""
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def edge_loss(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean L1 distance between image gradients: keeps edges sharp where plain L1/MSE blur them."""
    rx, ry = image_gradients(recon)
    tx, ty = image_gradients(target)
    return 0.5 * (F.l1_loss(rx, tx) + F.l1_loss(ry, ty))


def kl_loss(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)), mean over latent elements (Kingma & Welling 2014, App. B)."""
    return 0.5 * torch.mean(mean.pow(2) + logvar.exp() - 1.0 - logvar)


def vae_loss(recon: torch.Tensor, target: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor, vcfg
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted sum of the terms (weights from the ``vae`` config section) and the terms themselves."""
    recon, target = recon.float(), target.float()
    terms = {
        "l1": F.l1_loss(recon, target),
        "mse": F.mse_loss(recon, target),
        "edge": edge_loss(recon, target),
        "kl": kl_loss(mean.float(), logvar.float()),
    }
    total = (vcfg.l1_weight * terms["l1"] + vcfg.mse_weight * terms["mse"] + vcfg.edge_weight * terms["edge"]
             + vcfg.kl_weight * terms["kl"])
    return total, terms


def psnr(recon: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1] (peak 1 on the [0, 1] scale), over the whole batch."""
    mse01 = F.mse_loss(recon.float().clamp(-1, 1), target.float()).item() / 4.0
    return float("inf") if mse01 == 0 else 10.0 * math.log10(1.0 / mse01)
