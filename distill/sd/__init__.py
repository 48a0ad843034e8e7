"""Stable Diffusion (SD 1.x/2.x, SDXL) teachers and one-step latent students (SD-Turbo style).

Modules: config (the `sd:` recipe section), tiny (tiny pipelines from configs), teacher (loading,
prompt encoding, classifier-free guidance), data (captions, latents, synthetic cache), lora,
features (teacher-UNet discriminator features), export, img2img, report. Kept import-light.
"""
