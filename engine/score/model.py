"""The fracture model as scoring uses it: find, load and identify the checkpoint; score
prepared series, one bad series failing alone.

Shared by both backends and by ad hoc scoring (:mod:`engine.score.adhoc`), so a series
gets the same numbers wherever it is scored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import VfriskError
from engine.prepare import PreparedSeries, PrepareFailure

if TYPE_CHECKING:  # torch costs ~1 s to import: only loading a model needs it
    from engine.anatomy.inputs import PreprocessingSettings
    from models.checkpoint import Checkpoint
    from models.inference import Prediction

__all__ = ["LoadedModel", "default_model_path", "load_model", "resolve_device", "score_prepared"]


def default_model_path() -> Path:
    """The shipped checkpoint, ``models/weights/fracture_net.pt``."""
    import models

    return Path(models.__file__).parent / "weights" / "fracture_net.pt"


@dataclass(frozen=True)
class LoadedModel:
    """A checkpoint ready to score, with what the ``models`` table records about it.

    Attributes
    ----------
    checkpoint : Checkpoint
        The network (eval mode, on ``device``), its config and model id.
    path : Path
        The checkpoint file (absolute).
    sha256 : str
        SHA-256 of the file's bytes.
    card : dict or None
        The model card, from ``NAME.card.json`` beside the checkpoint when present.
    device : str
        ``cpu`` or ``cuda`` (possibly ``cuda:N``).
    """

    checkpoint: Checkpoint
    path: Path
    sha256: str
    card: dict[str, Any] | None
    device: str

    @property
    def model_id(self) -> str:
        """The checkpoint's model id (16 hex digits, :mod:`models.checkpoint`)."""
        return self.checkpoint.model_id

    def to(self, device: str) -> LoadedModel:
        """The same model on ``device`` (the network moves: this record then describes a
        network that is no longer on its ``device``; use the returned one)."""
        if device == self.device:
            return self
        self.checkpoint.model.to(device)
        return dataclasses.replace(self, device=device)

    def warm_up(self, settings: PreprocessingSettings) -> None:
        """Score one blank series (the shape ``settings`` makes) on the model's device.

        CUDA starts lazily: the first batch on a device pays for its context, the cuDNN
        and cuBLAS handles and the bf16 kernels (about 4 s on an H100 machine, measured by
        ``bench/score_throughput.py`` as model time of a 16-series run). The local backend
        calls this on CUDA while the workers prepare their first series, so that no batch
        waits for it.
        """
        import numpy as np

        from engine.anatomy.inputs import ModelInputs
        from models.inference import predict

        n = len(settings.levels)
        patch = np.full((n, *settings.network_zyx), 0.5, np.float16)
        blank = ModelInputs(
            series_uid="warm-up", preprocessing_version=settings.version,
            settings_digest=settings.digest(), levels=settings.levels, bone=patch,
            bone_muscle=patch, level_present=np.ones(n, bool),
            spacing_zyx_mm=settings.spacing_zyx_mm, centres_xyz=np.zeros((n, 3)),
            intensity=settings.intensity, hu_window=settings.hu_window,
            canal_hu=np.zeros(n, np.float32),
        )  # fmt: skip
        predict(self.checkpoint.model, [blank], device=self.device)


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when a CUDA device is visible, else ``cpu``; checks ``cuda``."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VfriskError(
            "bad_argument",
            f"--device {name}: no CUDA device is visible to PyTorch here; use --device cpu "
            "or auto, or install a CUDA build of torch",
        )
    if name != "cpu" and not name.startswith("cuda"):
        raise VfriskError("bad_argument", f"--device {name!r}: choose auto, cpu or cuda")
    return name


def anatomy_device(config: Any) -> str | None:
    """Where the prepare workers run the muscle network: ``[score] anatomy_device``.

    ``auto`` -> None (CUDA when PyTorch sees a device: every worker process then opens
    its own CUDA context), ``cpu`` (the GPU is left to the model) or ``cuda``.
    """
    name = str(config["score"]["anatomy_device"])
    if name == "auto":
        return None
    if name not in ("cpu", "cuda"):
        raise VfriskError(
            "bad_config", f"[score] anatomy_device = {name!r}: choose auto, cpu or cuda"
        )
    if name == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise VfriskError(
                "bad_config",
                "[score] anatomy_device = 'cuda' but no CUDA device is visible to PyTorch "
                "here; use auto or cpu",
            )
    return name


def card_path(model_path: Path) -> Path:
    """Where a checkpoint's model card lives: ``NAME.card.json`` beside ``NAME.pt``."""
    return model_path.with_name(model_path.stem + ".card.json")


def load_model(path: Path | str | None, preprocessing_version: str, device: str) -> LoadedModel:
    """Load the checkpoint at ``path`` (default :func:`default_model_path`) onto ``device``.

    Raises
    ------
    VfriskError
        ``model_missing`` when the file does not exist; ``checkpoint_mismatch`` when it is
        not a vfrisk checkpoint or was trained on another preprocessing version.
    """
    from models.checkpoint import load_checkpoint

    shipped = path is None
    model_path = Path(path) if path is not None else default_model_path()
    if not model_path.is_file():
        hint = (
            "no trained model ships with this installation yet; train one with `vfrisk train` "
            "or pass --model PATH"
            if shipped
            else "check the path, or train a model with `vfrisk train`"
        )
        raise VfriskError("model_missing", f"model checkpoint {model_path} does not exist: {hint}")
    device = resolve_device(device)
    checkpoint = load_checkpoint(
        model_path, preprocessing_version=preprocessing_version, device=device
    )
    digest = hashlib.sha256()
    with open(model_path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    card_file = card_path(model_path)
    card = json.loads(card_file.read_text()) if card_file.is_file() else None
    return LoadedModel(
        checkpoint=checkpoint,
        path=model_path.absolute(),
        sha256=digest.hexdigest(),
        card=card,
        device=device,
    )


def score_prepared(
    model: LoadedModel, prepared: Sequence[PreparedSeries], *, batch_size: int = 32
) -> list[Prediction | PrepareFailure]:
    """Run the network on prepared series; one result per series, in the given order.

    A series without any present level fails with ``no_levels_present`` (stage
    ``model``). When a batch raises, each series is retried alone so that only the bad
    one fails (``internal_error`` with the traceback).
    """
    from models.inference import predict

    results: dict[str, Prediction | PrepareFailure] = {}
    ready = []
    for p in prepared:
        if p.inputs.level_present.any():
            ready.append(p)
        else:
            results[p.series_uid] = PrepareFailure(
                p.series_uid, "model", "no_levels_present",
                f"series {p.series_uid}: none of the levels T12-L4 was found (flags: "
                f"{', '.join(p.qa_flags) or 'none'}); check the scan covers the lumbar spine",
            )  # fmt: skip
    net, device = model.checkpoint.model, model.device
    try:
        preds = predict(net, [p.inputs for p in ready], device=device, batch_size=batch_size)
        results.update((r.series_uid, r) for r in preds)
    except Exception:  # isolate the series that breaks the batch
        for p in ready:
            try:
                results[p.series_uid] = predict(net, [p.inputs], device=device)[0]
            except Exception as exc:
                detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                results[p.series_uid] = PrepareFailure(
                    p.series_uid, "model", "internal_error",
                    f"series {p.series_uid}: {detail}\n{traceback.format_exc(limit=6)}",
                )  # fmt: skip
    return [results[p.series_uid] for p in prepared]
