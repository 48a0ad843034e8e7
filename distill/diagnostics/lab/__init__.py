"""The GAN lab: toy mixtures of Gaussians, small MLP GANs, a mode counter and plots."""
