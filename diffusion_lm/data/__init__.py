from .corpus import TextCorpus, WikiText
from .seq2seq import Seq2SeqDataModule
from .tasks import IWSLT14, MBPP, WMT14, CommonGen, Multi30k, SQuAD, XSum
from .tokenization import TextTokenizer

__all__ = ["IWSLT14", "MBPP", "WMT14", "CommonGen", "Multi30k", "SQuAD", "Seq2SeqDataModule", "TextCorpus",
           "TextTokenizer", "WikiText", "XSum"]
