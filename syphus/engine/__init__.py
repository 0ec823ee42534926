"""The generation engine: request log, backends, scheduler, accounting and the generate pipeline.

Nothing here imports torch or litellm at module import time; backends load them on first use.
"""
