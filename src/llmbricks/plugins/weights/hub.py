"""Where ``llmbricks import hf SOURCE`` finds its folder: a local path, or a Hub repo id.

A repo id (``owner/name``) is fetched with ``huggingface_hub.snapshot_download``, restricted to
the files an import reads (config, safetensors, tokenizer files), into the Hugging Face cache
that ``transformers`` shares (``HF_HOME``, ``HF_HUB_CACHE``); ``HF_TOKEN`` and ``revision`` work
as they do there. With ``HF_HUB_OFFLINE=1`` or ``LLMBRICKS_OFFLINE=1`` only the cache is read,
and a repo that is not in it is one line saying what to download and where.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from llmbricks.core.errors import CheckpointError, DataError

__all__ = ["HUB_FILES", "is_repo_id", "resolve_source"]

#: What an import reads from a repo: nothing else is downloaded.
HUB_FILES = ["config.json", "generation_config.json", "model.safetensors",
             "model-*.safetensors", "model.safetensors.index.json", "tokenizer.json",
             "tokenizer_config.json", "special_tokens_map.json"]
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}$")
_ON = {"1", "true", "yes", "on"}


def is_repo_id(source: str) -> bool:
    """``owner/name`` that is not an existing path: what the Hub calls a repo id."""
    return bool(_REPO_ID.match(source)) and not Path(source).exists()


def _offline() -> bool:
    return any(os.environ.get(name, "").strip().lower() in _ON
               for name in ("HF_HUB_OFFLINE", "LLMBRICKS_OFFLINE"))


def resolve_source(source: str | Path, revision: str | None = None) -> Path:
    """The local folder of ``source``: itself when it is a folder, else the Hub snapshot."""
    path = Path(source)
    if path.is_dir():
        if revision is not None:
            raise CheckpointError(f"--revision is for a Hub repo id, but {source} is a local folder")
        return path
    if path.exists():
        raise CheckpointError(f"{source} is a file; give the folder that holds config.json")
    if not is_repo_id(str(source)):
        raise CheckpointError(f"{source} does not exist: give a folder holding config.json and "
                              "*.safetensors, or a Hub repo id (owner/name)")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import (
            GatedRepoError,
            HfHubHTTPError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError:
        raise DataError(f"{source} is not a local folder, and downloading from the Hub needs "
                        "huggingface_hub: pip install 'llmbricks[hub]'") from None
    offline = _offline()
    try:
        folder = snapshot_download(str(source), revision=revision, allow_patterns=HUB_FILES,
                                   local_files_only=offline)
    except LocalEntryNotFoundError:
        from huggingface_hub.constants import HF_HUB_CACHE

        at = f" at revision {revision}" if revision else ""
        if offline:
            raise DataError(f"{source}{at} is not in the Hugging Face cache ({HF_HUB_CACHE}) and "
                            "downloads are off (HF_HUB_OFFLINE or LLMBRICKS_OFFLINE): on a machine "
                            f"with network run `hf download {source}` with the same HF_HOME, "
                            "or give a local folder") from None
        raise DataError(f"{source}{at} could not be downloaded (no network?) and is not in the "
                        f"Hugging Face cache ({HF_HUB_CACHE})") from None
    except GatedRepoError:
        raise DataError(f"{source} is gated: accept its license on huggingface.co and set HF_TOKEN"
                        ) from None
    except RepositoryNotFoundError:
        raise DataError(f"{source}: no such repo on the Hub (or it is private: set HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise DataError(f"{source}: no revision {revision!r} on the Hub") from None
    except (HfHubHTTPError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{source}: the Hub download failed: {first}") from None
    return Path(folder)
