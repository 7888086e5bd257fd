"""Import the Whisper-LLaDA authors' released checkpoint (``checkpoint_best_epoch_*.pth``) into
this project's checkpoint format, with a report of every key it did not use and every
trainable parameter it did not fill.

The release holds only trainable weights under ``model``: the Q-Former as ``adapter.bert.*``
(BLIP-2 names, which ours keep), ``speech_query_tokens``, ``linear_proj.*`` and the LLaDA LoRA
weights as ``llada.base_model.model.*`` (peft names, which ours keep under ``llm.``); the full
layout is in docs/models.md.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from whisper_llada.checkpoint.files import load_model_state, save_checkpoint

log = logging.getLogger(__name__)

# (prefix in the release, prefix in our model); the first that matches wins.
RENAMES = (
    ("adapter.bert.", "qformer.bert."),
    ("speech_query_tokens", "qformer.query_tokens"),
    ("linear_proj.", "qformer.proj."),
    ("llada.", "llm."),
)


def rename_key(key: str) -> str | None:
    for old, new in RENAMES:
        if key.startswith(old):
            return new + key[len(old) :]
    return None


def map_released_state(released: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> dict:
    """Released weights renamed onto ``want`` (our trainable state dict).

    Returns ``{"state", "unused", "unfilled", "wrong_shape"}``: the mapped state, released keys
    with no place in our model, our trainable keys that got nothing, and shape mismatches.
    """
    state, unused, wrong = {}, [], []
    for key, value in released.items():
        ours = rename_key(key)
        if ours is None or ours not in want:
            unused.append(key)
            continue
        if tuple(value.shape) != tuple(want[ours].shape):
            wrong.append(f"{key} {tuple(value.shape)} -> {ours} {tuple(want[ours].shape)}")
            continue
        state[ours] = value.to(want[ours].dtype)
    unfilled = sorted(set(want) - set(state))
    return {"state": state, "unused": sorted(unused), "unfilled": unfilled, "wrong_shape": wrong}


def import_released_checkpoint(model, pth: str | Path, out: str | Path, allow_unfilled: bool = False) -> dict:
    """Load the release into ``model`` and save it as our checkpoint at ``out`` (atomic).

    A shape mismatch is an error; so is a trainable parameter left unfilled, unless
    ``allow_unfilled`` (it then keeps its initial value, which the report names).
    """
    pth = Path(pth)
    if not pth.is_file():
        raise FileNotFoundError(f"{pth}: released checkpoint not found")
    try:
        obj = torch.load(pth, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated zip is a RuntimeError, a foreign pickle anything
        raise ValueError(
            f"{pth}: cannot read the released checkpoint ({type(e).__name__}: {e}); download it again"
        ) from e
    released = obj.get("model") if isinstance(obj, dict) else None
    if not isinstance(released, dict):
        raise ValueError(f"{pth}: expected a dict with key 'model' (the authors' release layout)")
    want = model.trainable_state_dict()
    report = map_released_state(released, want)
    if report["wrong_shape"]:
        raise ValueError(
            f"{pth}: {len(report['wrong_shape'])} weights do not fit the model config: "
            + "; ".join(report["wrong_shape"][:5])
        )
    if report["unfilled"] and not allow_unfilled:
        raise ValueError(
            f"{pth}: {len(report['unfilled'])} trainable parameters of the model get no weight "
            f"(e.g. {report['unfilled'][:3]}); does the config match the release (LoRA r, targets, "
            f"Q-Former size, auxiliary CTC)? allow_unfilled keeps their initial values"
        )
    state = {**{k: v for k, v in want.items() if k in report["unfilled"]}, **report["state"]}
    load_model_state(model, state, str(pth))
    save_checkpoint(
        out,
        model,
        {"epoch": 0, "imported_from": str(pth), "unused_keys": report["unused"], "unfilled_params": report["unfilled"]},
    )
    for key in report["unused"]:
        log.info("not used: %s", key)
    for key in report["unfilled"]:
        log.warning("not filled (initial value kept): %s", key)
    log.info(
        "%s: %d weights imported, %d keys not used, %d parameters not filled -> %s",
        pth,
        len(report["state"]),
        len(report["unused"]),
        len(report["unfilled"]),
        out,
    )
    return report
