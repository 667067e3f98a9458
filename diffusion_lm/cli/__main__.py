"""``python -m diffusion_lm.cli …``: the same as ``diffusion-lm …``."""

from .commands import main

main()
