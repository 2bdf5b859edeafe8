"""Fine-tuning: pairs → hard negatives → (teacher) → SentenceTransformerTrainer → tracked run folder."""
from .pairs import Pair, pairs_from_qrels, read_pairs, write_pairs

__all__ = ["Pair", "pairs_from_qrels", "read_pairs", "write_pairs", "FinetuneConfig", "finetune"]


def __getattr__(name):
    if name in ("FinetuneConfig", "finetune", "FinetuneResult"):
        from . import train

        return getattr(train, name)
    raise AttributeError(name)
