"""diffusion_lm: train and evaluate text diffusion language models with PyTorch Lightning."""

__version__ = "0.1.0"
