"""Save and load a trained network with what it needs to be trusted.

A checkpoint is one ``torch.save`` file holding: the :class:`~models.config.ModelConfig`
(as a dict, so the file rebuilds its own network), the float32 ``state_dict``, the
``[preprocessing] version`` of the inputs it was trained on, the vfrisk version that
wrote it, free JSON-ready ``metadata`` (epoch, metrics, seeds) and a ``model_id``: the
first 16 hex digits of a SHA-256 over the configuration, the preprocessing version and
every tensor (name, dtype, shape, bytes). The id names the model in the database and
the model card; it is recomputed on load, so damaged or edited weights are refused.

A model only means something on inputs made the way it was trained: loading a
checkpoint whose preprocessing version differs from the engine's current one is refused
with ``VfriskError('checkpoint_mismatch')``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine.errors import VfriskError
from models.config import ModelConfig
from models.network import FractureNet

__all__ = ["FORMAT", "Checkpoint", "compute_model_id", "load_checkpoint", "save_checkpoint"]

#: Written into every file; a file of another format is refused.
FORMAT = "vfrisk-fracture-net/1"

#: Buffers a file written before they existed may lack; the network's defaults stand in
#: (the survival head's recalibration: the identity).
_ADDED_LATER = frozenset({"survival.recalibration"})


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint.

    Attributes
    ----------
    model : FractureNet
        In eval mode, on the requested device.
    config : ModelConfig
    preprocessing_version : str
        ``[preprocessing] version`` of the training inputs.
    model_id : str
        16 hex digits (see module doc).
    code_version : str
        ``engine.__version__`` of the writer.
    metadata : dict
        What the trainer stored (JSON-ready).
    """

    model: FractureNet
    config: ModelConfig
    preprocessing_version: str
    model_id: str
    code_version: str
    metadata: dict[str, Any] = field(default_factory=dict)


def compute_model_id(
    config: ModelConfig, state_dict: dict[str, torch.Tensor], preprocessing_version: str
) -> str:
    """SHA-256 prefix (16 hex) of configuration, preprocessing version and tensors."""
    h = hashlib.sha256()
    head = {"config": config.to_dict(), "preprocessing_version": preprocessing_version}
    h.update(json.dumps(head, sort_keys=True).encode())
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _current_preprocessing_version() -> str:
    from engine.config import load_config

    return str(load_config()["preprocessing"]["version"])


def save_checkpoint(
    model: FractureNet,
    path: Path | str,
    *,
    preprocessing_version: str,
    metadata: dict[str, Any] | None = None,
) -> str:
    """Write ``model`` to ``path`` (atomically); return its model id.

    Parameters
    ----------
    model : FractureNet
    path : Path or str
        Output file (``.pt``); parent folders are created.
    preprocessing_version : str
        ``[preprocessing] version`` of the inputs the model was trained on.
    metadata : dict, optional
        JSON-ready extras (epoch, metrics, seeds, command).
    """
    state = {k: v.detach().cpu().float() if v.is_floating_point() else v.detach().cpu()
             for k, v in model.state_dict().items()}  # fmt: skip
    state = {k: v.contiguous() for k, v in state.items()}
    model_id = compute_model_id(model.config, state, preprocessing_version)
    from engine import __version__

    blob = {
        "format": FORMAT,
        "config": model.config.to_dict(),
        "state_dict": state,
        "preprocessing_version": preprocessing_version,
        "model_id": model_id,
        "code_version": __version__,
        "metadata": json.loads(json.dumps(metadata or {})),  # refuses non-JSON early
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(blob, tmp)
    tmp.replace(path)  # a crash never leaves half a checkpoint
    return model_id


def load_checkpoint(
    path: Path | str,
    *,
    preprocessing_version: str | None = None,
    device: str | torch.device = "cpu",
) -> Checkpoint:
    """Rebuild the network of a checkpoint, checked against the engine's preprocessing.

    Parameters
    ----------
    path : Path or str
        A file from :func:`save_checkpoint`.
    preprocessing_version : str, optional
        The version the inputs will be made with; default the engine's current
        ``[preprocessing] version`` (:func:`engine.config.load_config`).
    device : str or torch.device

    Returns
    -------
    Checkpoint

    Raises
    ------
    FileNotFoundError
        No such file.
    VfriskError
        ``checkpoint_mismatch``: the file is not a vfrisk checkpoint, its weights do not
        match its model id, or it was trained on another preprocessing version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model checkpoint {path} does not exist")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors alike: the file is unusable
        raise VfriskError(
            "checkpoint_mismatch", f"{path} cannot be read as a vfrisk checkpoint: {exc}"
        ) from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise VfriskError(
            "checkpoint_mismatch",
            f"{path} is not a vfrisk fracture-network checkpoint (format {FORMAT})",
        )
    config = ModelConfig.from_dict(blob["config"])
    trained_on = str(blob["preprocessing_version"])
    expected = (
        _current_preprocessing_version() if preprocessing_version is None else preprocessing_version
    )
    if trained_on != expected:
        raise VfriskError(
            "checkpoint_mismatch",
            f"{path} was trained on inputs of preprocessing version {trained_on!r}, but the "
            f"engine makes version {expected!r}; use weights trained for {expected!r} "
            f"(retrain with `vfrisk train`) or set [preprocessing] version and its settings "
            f"back to those of {trained_on!r}",
        )
    state = blob["state_dict"]
    if compute_model_id(config, state, trained_on) != blob["model_id"]:
        raise VfriskError(
            "checkpoint_mismatch",
            f"{path}: the weights do not match model id {blob['model_id']} (file damaged "
            "or edited); restore it from the original",
        )
    model = FractureNet(config)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
        problem = (
            f"missing {sorted(missing)}, unexpected {sorted(unexpected)}"
            if unexpected or set(missing) - _ADDED_LATER
            else None
        )
    except RuntimeError as exc:  # a tensor of another shape (say, another feature set)
        problem = str(exc).splitlines()[-1].strip()
    if problem is not None:
        raise VfriskError(
            "checkpoint_mismatch",
            f"{path}: its weights do not fit the network its configuration describes "
            f"({problem}); it was written by another vfrisk version: retrain with "
            "`vfrisk train`",
        )
    return Checkpoint(
        model=model.to(device).eval(),
        config=config,
        preprocessing_version=trained_on,
        model_id=str(blob["model_id"]),
        code_version=str(blob.get("code_version", "")),
        metadata=dict(blob.get("metadata", {})),
    )
