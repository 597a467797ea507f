"""Cheap previews: the denoising latents projected to RGB, no VAE decode.

Stable Diffusion's four latent channels map almost linearly to colour; the projection below is a
least-squares fit of decoded colours on latents (values published by the community for the SD 1.x
and SDXL VAEs). A preview costs one tiny matrix product on a latent-sized image (64x64 for a
512x512 picture), which is well under 1% of a denoising step. Other latent layouts fall back to
a normalised view of their first three channels; packed (sequence) latents get no preview.
"""

from __future__ import annotations

from typing import Any

# rows: latent channels; columns: R, G, B
_SD_FACTORS = (
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)
_SD_BIAS = (0.0, 0.0, 0.0)
_SDXL_FACTORS = (
    (0.3651, 0.4232, 0.4341),
    (-0.2533, -0.0042, 0.1068),
    (0.1076, 0.1111, -0.0362),
    (-0.3165, -0.2492, -0.2188),
)
_SDXL_BIAS = (0.1084, -0.0175, -0.0011)


def latent_format(pipe: Any) -> str:
    """``"sdxl"``, ``"sd"`` (4-channel SD-VAE latents) or ``"generic"``."""
    unet = getattr(pipe, "unet", None)
    vae = getattr(pipe, "vae", None)
    channels = getattr(getattr(vae, "config", None), "latent_channels", None)
    if unet is not None and channels == 4:
        if getattr(unet.config, "addition_embed_type", None) == "text_time":
            return "sdxl"
        return "sd"
    return "generic"


def latents_to_rgb(latents: Any, fmt: str) -> Any:
    """Latents (B, C, h, w) -> uint8 numpy array (B, h, w, 3); ``None`` for other layouts."""
    import torch

    if latents.ndim != 4:
        return None
    x = latents.detach()[:, :, :, :].float()
    # early latents are scaled noise (sigma up to ~15 for Euler-type schedulers): keep them in range
    std = float(x.std())
    if std > 1.5:
        x = x / std
    if fmt in ("sd", "sdxl") and x.shape[1] == 4:
        factors = torch.tensor(
            _SDXL_FACTORS if fmt == "sdxl" else _SD_FACTORS, dtype=x.dtype, device=x.device
        )
        bias = torch.tensor(
            _SDXL_BIAS if fmt == "sdxl" else _SD_BIAS, dtype=x.dtype, device=x.device
        )
        rgb = torch.einsum("bchw,cr->bhwr", x, factors) + bias
    else:
        rgb = x[:, :3].permute(0, 2, 3, 1)
        if rgb.shape[-1] < 3:
            rgb = rgb.mean(dim=-1, keepdim=True).expand(*rgb.shape[:-1], 3)
        lo = rgb.amin(dim=(1, 2, 3), keepdim=True)
        hi = rgb.amax(dim=(1, 2, 3), keepdim=True)
        rgb = (rgb - lo) / (hi - lo).clamp_min(1e-6) * 2 - 1
    return ((rgb + 1.0) * 127.5).clamp(0, 255).to(torch.uint8).cpu().numpy()


def latents_to_images(latents: Any, fmt: str, scale: int = 2) -> list[Any]:
    """One PIL preview per batch item, upscaled ``scale`` times; [] if not previewable."""
    from PIL import Image

    arr = latents_to_rgb(latents, fmt)
    if arr is None:
        return []
    out = []
    for item in arr:
        img = Image.fromarray(item)
        if scale > 1:
            img = img.resize((img.width * scale, img.height * scale), Image.Resampling.BILINEAR)
        out.append(img)
    return out
