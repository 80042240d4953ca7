"""Energy estimates from operation counts.

SynOps (synaptic operations of the SNN, one accumulate each) are counted
exactly by :meth:`eventsim.network.Network.run`; the ANN comparison counts one
multiply-accumulate per synapse per output position
(:meth:`eventsim.network.Network.ann_macs`). Energy is

    E_SNN = SynOps * E_AC        E_ANN = MACs * E_MAC

with per-operation energies at 45 nm (Horowitz, ISSCC 2014), the figures Lee
et al. 2020 (Sec. 5.7) use: 32-bit float AC 0.9 pJ and MAC 4.6 pJ; 32-bit
integer AC 0.1 pJ and MAC 3.2 pJ. Pooling operations are reported apart and
not charged, as in Lee et al. (who count convolutional and linear layers only).
"""

from __future__ import annotations

from dataclasses import dataclass

from eventsim.errors import OptionError


@dataclass(frozen=True)
class EnergyModel:
    """Energy per accumulate (AC) and per multiply-accumulate (MAC), in joules."""

    name: str
    e_ac: float
    e_mac: float


ENERGY_MODELS: dict[str, EnergyModel] = {
    "fp32": EnergyModel("fp32", e_ac=0.9e-12, e_mac=4.6e-12),
    "int32": EnergyModel("int32", e_ac=0.1e-12, e_mac=3.2e-12),
}


@dataclass(frozen=True)
class EnergyEstimate:
    """SNN and ANN energy for the same network and input, in joules."""

    model: EnergyModel
    synops: float
    ann_macs: float
    snn_joules: float
    ann_joules: float

    @property
    def ann_over_snn(self) -> float:
        """How many times less energy the SNN needs (inf when it needs none)."""
        return self.ann_joules / self.snn_joules if self.snn_joules else float("inf")


def estimate_energy(synops: float, ann_macs: float, model: str | EnergyModel = "fp32") -> EnergyEstimate:
    """Energy of ``synops`` accumulates against ``ann_macs`` multiply-accumulates.

    Parameters
    ----------
    synops : float
        SynOps per sample (e.g. ``result.total_synops().mean()``).
    ann_macs : float
        MACs of the ANN with the same layers (``sum(network.ann_macs().values())``).
    model : "fp32", "int32" or EnergyModel
        Per-operation energies; see :data:`ENERGY_MODELS`.
    """
    if isinstance(model, str):
        if model not in ENERGY_MODELS:
            raise OptionError(f"unknown energy model {model!r}; choose one of {sorted(ENERGY_MODELS)}")
        model = ENERGY_MODELS[model]
    if synops < 0 or ann_macs < 0:
        raise OptionError(f"operation counts must be >= 0, got synops={synops}, ann_macs={ann_macs}")
    synops, ann_macs = float(synops), float(ann_macs)
    return EnergyEstimate(model, synops, ann_macs, synops * model.e_ac, ann_macs * model.e_mac)
