"""Syphus: visual annotations -> multimodal instruction data -> Otter."""

__version__ = "0.1.0"
