"""Fine-tuning: pairs → hard negatives → (teacher) → SentenceTransformerTrainer → tracked run folder."""
from .pairs import Pair, pairs_from_qrels, read_pairs, write_pairs

__all__ = ["Pair", "pairs_from_qrels", "read_pairs", "write_pairs", "FinetuneConfig", "finetune"]


def __getattr__(name):
    if name in ("FinetuneConfig", "FinetuneResult"):
        from . import config

        return getattr(config, name)
    if name == "finetune":   # imports the training stack's modules (not torch itself) only when asked for
        from .run import finetune

        return finetune
    raise AttributeError(name)
