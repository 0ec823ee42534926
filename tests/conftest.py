"""Settings for the whole suite: nothing reaches a model hub, and thread pools do not spin.

Set before any test module imports torch, so they also reach the subprocesses tests start.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# OpenMP workers spin while waiting by default; on a shared 2-core machine that made torch and
# FAISS several times slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
