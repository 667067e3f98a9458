"""``python -m diffusion_lm.cli …``: the same as ``diffusion-lm …``."""

from .app import main

main()
