"""Audio-conditioned latent diffusion with shuffle pressure (postmortem §2).

- ``schedule``: the noise schedule and parametrisation math (pure functions).
- ``model``: the :class:`Denoiser` (DiT-style space-time transformer over latent patches).
- ``shuffle``: wrong-audio negatives (each checked to be other audio) and the hinge / InfoNCE pressure.
- ``losses``: the full training loss ``diffusion_loss(model, batch, cfg, generator, decoder)``.
- ``sampler``: DDIM / Heun samplers with scheduled audio classifier-free guidance.
- ``train``: the training loop behind ``trainer diffusion``.
"""
