"""``diffusion-lm export SOURCE OUT_DIR`` (or ``python -m diffusion_lm.cli.export``): an autoregressive
``.ckpt`` of this framework (or a Hugging Face source) written as a Hugging Face causal-LM directory
(:func:`diffusion_lm.models.convert.export_hf`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..models.convert import export_hf, load_into
from ..models.denoiser import Denoiser
from ..pretrained import load_pretrained


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="diffusion-lm export", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="a .ckpt of this framework, a Hugging Face directory or Hub id")
    parser.add_argument("out_dir")
    parser.add_argument("--weights", choices=["ema", "raw"], default="ema")
    args = parser.parse_args(None if argv is None else list(argv))
    pre = load_pretrained(args.source, args.weights)
    model = Denoiser(pre.config)
    load_into(model, pre.state_dict, pre.source)
    print(export_hf(model, args.out_dir, pre.tokenizer))


if __name__ == "__main__":
    main()
