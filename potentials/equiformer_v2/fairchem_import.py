"""Import of fairchem 1.x EquiformerV2 checkpoints (``eq2_31M_ec4_allmd.pt`` and kin).

Such a file is a ``torch.save`` of ``{"config": {"model": {...}, ...}, "state_dict": {...},
"normalizers": {...}, ...}``. The weights are renamed to this package's modules, the constant buffers
the reference duplicates under every layer are dropped (they are recomputed, and the distance basis
is checked against the file), element tables are cut down to the elements the model supports, and
the energy/force normalisers go into the config. The result is an :class:`EquiformerV2` in
``compatible`` mode: direct forces, the reference's 12 Å / 20-neighbour graph, and predictions of
what the checkpoint was trained on (OC20 models: adsorption energies).
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import Tensor

from ..checkpoint import register_checkpoint_format
from ..errors import CheckpointError
from .model import EquiformerV2, EquiformerV2Config

#: reference options this implementation reproduces: name -> (the reference's default, the value needed)
_SUPPORTED = {
    "use_pbc": (True, True), "regress_forces": (True, True), "use_atom_edge_embedding": (True, True),
    "share_atom_edge_embedding": (False, False), "use_m_share_rad": (False, False),
    "distance_function": ("gaussian", "gaussian"), "use_s2_act_attn": (False, False),
    "use_attn_renorm": (True, True), "use_grid_mlp": (False, True), "use_sep_s2_act": (True, True),
    "use_gate_act": (False, False), "use_energy_lin_ref": (False, False),
    "enforce_max_neighbors_strictly": (True, True),  # fairchem's non-strict cap counts from the (k+1)-th
}
_RENAMES = [
    (r"^edge_degree_embedding\.(source|target)_embedding", r"edge_degree.edge_features.\1_embedding"),
    (r"^edge_degree_embedding\.rad_func\.", "edge_degree.radial."),
    (r"\.ga\.(source|target)_embedding", r".attention.edge_features.\1_embedding"),
    (r"^force_block\.(source|target)_embedding", r"force_head.edge_features.\1_embedding"),
    (r"\.ga\.", ".attention."),
    (r"\.ffn\.", ".feed_forward."),
    (r"^energy_block\.", "energy_head."),
    (r"^force_block\.", "force_head."),
    (r"so2_conv_1\.", "conv_1."),
    (r"so2_conv_2\.", "conv_2."),
    (r"\.so2_m_conv\.(\d+)\.fc\.", r".fc_m.\1."),
    (r"\.rad_func\.", ".radial."),
    (r"so3_linear_1\.", "linear_1."),
    (r"so3_linear_2\.", "linear_2."),
]
_DROPPED = re.compile(
    r"(SO3_grid|SO3_rotation|mappingReduced|expand_index|balance_degree_weight|distance_expansion)"
)


def is_fairchem_checkpoint(payload: Any) -> bool:
    """A fairchem 1.x checkpoint of an EquiformerV2 model."""
    return (
        isinstance(payload, dict)
        and isinstance(payload.get("config"), dict)
        and isinstance(payload["config"].get("model"), (dict, str))
        and _model_name(payload["config"]) == "equiformer_v2"
        and isinstance(payload.get("state_dict"), dict)
    )


def _model_name(config: dict) -> str | None:
    model = config.get("model")
    return model.get("name") if isinstance(model, dict) else model


def config_from_fairchem(payload: dict) -> EquiformerV2Config:
    """The compatible-mode configuration equivalent to a fairchem checkpoint's."""
    config = payload["config"]
    model = dict(config["model"]) if isinstance(config["model"], dict) else {}
    model.update(config.get("model_attributes") or {})  # configs from before fairchem 1.0
    for key, (default, needed) in _SUPPORTED.items():
        if model.get(key, default) != needed:
            raise CheckpointError(f"EquiformerV2 option {key}={model.get(key, default)!r} is not supported (only {needed!r})")
    lmax, mmax = model.get("lmax_list", [6]), model.get("mmax_list", [2])
    if len(lmax) != 1 or len(mmax) != 1:
        raise CheckpointError(f"multi-resolution EquiformerV2 (lmax_list={lmax}) is not supported")
    energy_mean, energy_std, force_std = _normalizers(payload)
    n_elements = int(model.get("max_num_elements", 90))
    return EquiformerV2Config(
        mode="compatible",
        cutoff=float(model.get("max_radius", 5.0)),
        max_neighbors=int(model.get("max_neighbors", 500)),
        enforce_max_neighbors_strictly=True,
        elements=tuple(range(1, n_elements)),
        num_layers=int(model.get("num_layers", 12)),
        lmax=int(lmax[0]),
        mmax=int(mmax[0]),
        sphere_channels=int(model.get("sphere_channels", 128)),
        attn_hidden_channels=int(model.get("attn_hidden_channels", 128)),
        num_heads=int(model.get("num_heads", 8)),
        attn_alpha_channels=int(model.get("attn_alpha_channels", 32)),
        attn_value_channels=int(model.get("attn_value_channels", 16)),
        ffn_hidden_channels=int(model.get("ffn_hidden_channels", 512)),
        norm_type=str(model.get("norm_type", "rms_norm_sh")),
        grid_resolution=int(model.get("grid_resolution") or 18),
        edge_channels=int(model.get("edge_channels", 128)),
        num_distance_basis=600,  # the reference always uses 600 Gaussians, whatever the config says
        avg_num_nodes=float(model.get("avg_num_nodes") or 77.81317),
        avg_degree=float(model.get("avg_degree") or 23.395238876342773),
        energy_mean=energy_mean,
        energy_std=energy_std,
        force_std=force_std,
    )


def _normalizers(payload: dict) -> tuple[float, float, float]:
    """(energy mean, energy std, force std) from the checkpoint's normalisers, else its dataset config."""
    norms = payload.get("normalizers") or {}
    energy = norms.get("target") or norms.get("energy")
    forces = norms.get("grad_target") or norms.get("forces")
    if energy is None:  # fall back to the dataset entry of the config
        dataset = payload["config"].get("dataset")
        dataset = dataset[0] if isinstance(dataset, list) else dataset or {}
        if "target_mean" not in dataset:
            return 0.0, 1.0, 1.0
        energy = {"mean": dataset["target_mean"], "std": dataset["target_std"]}
        forces = {"std": dataset.get("grad_target_std", dataset["target_std"])}
    std = _number(energy.get("std", energy.get("rmsd", 1.0)))
    force_std = _number(forces.get("std", forces.get("rmsd", std))) if forces else std
    return _number(energy.get("mean", 0.0)), std, force_std


def _number(value: Any) -> float:
    return float(value.item() if isinstance(value, Tensor) else value)


def state_dict_from_fairchem(state_dict: dict[str, Tensor], elements: tuple[int, ...]) -> dict[str, Tensor]:
    """Rename the reference's weights to this package's modules; keep the rows of ``elements`` in
    element tables (the reference indexes them by atomic number)."""
    rows = torch.tensor(elements)
    out = {}
    for key, value in state_dict.items():
        key = re.sub(r"^(module\.)+", "", key)
        if _DROPPED.search(key):
            continue
        for pattern, replacement in _RENAMES:
            key = re.sub(pattern, replacement, key)
        if key.endswith("_embedding.weight") and ("sphere_embedding" in key or "edge_features" in key):
            value = value[rows]
        out[key] = value
    return out


def load_fairchem(payload: dict, source: str) -> EquiformerV2:
    """Build the compatible-mode model of a fairchem checkpoint ``payload`` read from ``source``."""
    config = config_from_fairchem(payload)
    model = EquiformerV2(config)
    state = state_dict_from_fairchem(payload["state_dict"], config.elements)
    state["atomic_energies"] = model.atomic_energies  # the reference has none: its outputs are already referenced
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"weights do not match an EquiformerV2 of this configuration: {err}") from None
    offsets = next((v for k, v in payload["state_dict"].items() if k.endswith("distance_expansion.offset")), None)
    if offsets is not None and not torch.allclose(offsets, model.distance.constants.get("offsets", offsets)):
        raise CheckpointError(f"its distance basis differs from 600 Gaussians on [0, {config.cutoff}] Å")
    model.metadata = {"name": source, "format": "fairchem-1.x", "predicts": "what the checkpoint was trained on"}
    return model.eval()


register_checkpoint_format("a fairchem 1.x EquiformerV2 checkpoint", is_fairchem_checkpoint, load_fairchem)
