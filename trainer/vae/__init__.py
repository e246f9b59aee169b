"""Frame VAE: model (model.py), loss terms (loss.py), training loop (train.py).

``load_vae(run_or_step_dir, device)`` gives the EMA weights of a trained run, as ``trainer
cache-latents``, ``trainer sample`` and the evaluation decode with them.
"""

from trainer.vae.loss import edge_loss, kl_loss, psnr, vae_loss
from trainer.vae.model import FrameVAE, load_vae

__all__ = ["FrameVAE", "load_vae", "vae_loss", "kl_loss", "edge_loss", "psnr"]
