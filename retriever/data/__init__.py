"""Datasets: the BEIR-format loader and builders of domain datasets."""
from .beir import BeirDataset, load_beir, read_corpus, write_beir

__all__ = ["BeirDataset", "load_beir", "read_corpus", "write_beir"]
