"""Embedders chosen by spec string (``models``), the per-(content, model) vector cache
(``cache``), the batched embedding pipeline with decoding workers (``pipeline``) and its
torchrun form (``distributed``). Submodules are imported directly so that importing this
package stays cheap for the CLI."""

DEFAULT_IMAGE_MODEL = "effnet:lite0"
DEFAULT_TEXT_MODEL = "st:all-MiniLM-L6-v2"
