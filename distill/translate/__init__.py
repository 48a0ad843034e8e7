"""Image-to-image translation: pix2pix (Isola et al. 2017) and CycleGAN (Zhu et al. 2017).

  networks.py  U-Net / ResNet generators, PatchGAN / pixel discriminators (reference key names)
  losses.py    GAN modes on top of distill.gan.losses, L1 / cycle / identity terms
  pool.py      the 50-image history pool
  data.py      aligned, paired, unaligned, .npz and Hub data; direction; resize / crop / flip
  methods.py   one optimisation step of pix2pix and of CycleGAN
  train.py     the accelerate loop shared by both
  weights.py   fine-tuning: loading our checkpoints or reference state dicts, freezing
  infer.py     translating images / folders, ONNX export with a parity check
  evaluate.py  L1 / PSNR / SSIM (paired), domain success / KID / cycle error (unpaired), report.md
"""
