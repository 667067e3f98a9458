from .benchmarks import WMT14, Multi30k
from .corpus import TextCorpus, WikiText
from .seq2seq import Seq2SeqDataModule
from .tokenization import TextTokenizer

__all__ = ["WMT14", "Multi30k", "Seq2SeqDataModule", "TextCorpus", "TextTokenizer", "WikiText"]
