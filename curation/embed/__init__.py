"""Embedders chosen by spec string (``models``), the batched embedding pipeline with decoding workers (``pipeline``) and its
torchrun form (``distributed``). The per-(content, model) vector cache is the corpus's
``embeddings`` table (``curation/schema.py``, read and written by ``Corpus`` methods). Submodules are imported directly so that importing this
package stays cheap for the CLI."""

DEFAULT_IMAGE_MODEL = "effnet:lite0"
DEFAULT_TEXT_MODEL = "st:all-MiniLM-L6-v2"
