"""API keys: from the environment, else from a config file. Never stored, logged or exported.

The config file is ``$SYPHUS_CONFIG`` or ``~/.config/syphus/config.toml``::

    [keys]
    openai = "sk-..."
    anthropic = "sk-ant-..."
    api_base = "token for --api-base endpoints"
"""

from __future__ import annotations

import os
from pathlib import Path

import tomllib

from schemas.errors import SyphusError

ENV_VARS = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "api_base": "SYPHUS_API_KEY",
}


def config_path() -> Path:
    return Path(os.environ.get("SYPHUS_CONFIG", "~/.config/syphus/config.toml")).expanduser()


def api_key(provider: str) -> str | None:
    """The key for ``provider`` (openai, anthropic, api_base, or any litellm provider name)."""
    env = ENV_VARS.get(provider, f"{provider.upper()}_API_KEY")
    if os.environ.get(env):
        return os.environ[env]
    path = config_path()
    if not path.is_file():
        return None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise SyphusError(f"{path}: invalid TOML ({e})") from e
    keys = data.get("keys", {})
    if not isinstance(keys, dict):
        raise SyphusError(f"{path}: field 'keys' must be a table of provider = \"key\"")
    value = keys.get(provider)
    return str(value) if value else None
