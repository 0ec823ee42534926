"""API keys: from the environment, else from a config file. Never stored, logged or exported.

The config file is ``$SYPHUS_CONFIG`` or ``~/.config/syphus/config.toml``::

    [keys]
    openai = "sk-..."
    anthropic = "sk-ant-..."
    api_base = "token for --api-base endpoints"
"""

from __future__ import annotations

import os
import re
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


# Shapes of credentials a server or a library may echo back in an error: a bearer token, an
# OpenAI/Anthropic-style secret key, an api key given as a header or a query parameter.
_CREDENTIAL_RES = (
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{4,}"),
    re.compile(
        r"(?i)\b(x-api-key|api[_-]?key|access[_-]?token|authorization)(\s*[:=]\s*|[\"']\s*:\s*[\"'])(?!(?i:bearer|basic)\s|\[REDACTED\])[^\s\"',;&}]{4,}"
    ),
)
REDACTED = "[REDACTED]"


def _configured_keys() -> list[str]:
    """Every key this process could send: from the environment and the config file."""
    found = [v for k, v in os.environ.items() if v and (k.endswith("_API_KEY") or k in ENV_VARS.values())]
    path = config_path()
    if path.is_file():
        try:
            keys = tomllib.loads(path.read_text(encoding="utf-8")).get("keys", {})
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError):
            keys = {}
        if isinstance(keys, dict):
            found += [str(v) for v in keys.values() if v]
    # longest first, so a key that contains another is removed whole
    return sorted({k for k in found if len(k) >= 4}, key=len, reverse=True)


def redact(text: str | None) -> str | None:
    """``text`` with the configured keys and anything shaped like a credential replaced by
    [REDACTED]: for every error message, log line and stored error that may quote a server."""
    if not text:
        return text
    for key in _configured_keys():
        text = text.replace(key, REDACTED)
    text = _CREDENTIAL_RES[0].sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _CREDENTIAL_RES[1].sub(REDACTED, text)
    return _CREDENTIAL_RES[2].sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
