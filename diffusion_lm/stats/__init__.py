"""Statistics shared by training, decoding and evaluation (a leaf layer: it imports nothing of the package).

* :mod:`.bins` — equal-width bins of the noise level t ∈ [0, 1].
* :mod:`.ngrams` — n-gram counts and sentence-level BLEU on token sequences (MBR selection, CIDEr-D).
"""
