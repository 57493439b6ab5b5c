"""The estimator registry. Keys are permanent: they are written into result files."""

from estimators.antithetic import ARM, ARMS, DisARM
from estimators.arsm import ARSM
from estimators.base import Estimator, State, Surrogate
from estimators.carms import CARMS
from estimators.control_variate import MuProp
from estimators.delta_method import DeltaCV
from estimators.double_control import DoubleCV
from estimators.exact_sum import IndeCateR
from estimators.gamma_reparam import RSVI, GeneralizedReparam, ImplicitReparam
from estimators.gengs import GenGS
from estimators.group import GRPO, DrGRPO
from estimators.igr import IGR
from estimators.lax import Lax
from estimators.local_disarm import LocalDisARM
from estimators.measure_valued import MeasureValued
from estimators.optimal_baseline import ReinforceOptimalBaseline
from estimators.quasi_monte_carlo import RQMCReparam
from estimators.rebar_relax import Rebar, Relax
from estimators.relaxed import (
    DecoupledSTGumbelSoftmax,
    GumbelSoftmax,
    STGumbelSoftmax,
    StraightThrough,
)
from estimators.reparam import DReG, Reparam, StickingTheLanding
from estimators.rodeo import Rodeo
from estimators.score_function import (
    NVIL,
    VIMCO,
    Reinforce,
    ReinforceEMA,
    ReinforceExactBaseline,
    ReinforceLOO,
)
from estimators.stochastic_softmax import SST, STSST
from estimators.stochastic_triples import StochasticTriples
from estimators.straight_through import ZGR, GappedST, GumbelRao, ReinMax
from estimators.without_replacement import UnorderedSet

ESTIMATORS: dict[str, type[Estimator]] = {
    "reinforce": Reinforce,
    "reinforce_ema": ReinforceEMA,
    "reinforce_loo": ReinforceLOO,
    "reparam": Reparam,
    "gumbel_softmax": GumbelSoftmax,
    "st_gumbel_softmax": STGumbelSoftmax,
    "straight_through": StraightThrough,
    "reinforce_exact_baseline": ReinforceExactBaseline,
    "arm": ARM,
    "disarm": DisARM,
    "arms": ARMS,
    "arsm": ARSM,
    "muprop": MuProp,
    "rebar": Rebar,
    "relax": Relax,
    "gumbel_rao": GumbelRao,
    "reinmax": ReinMax,
    "gst": GappedST,
    "zgr": ZGR,
    "indecater": IndeCateR,
    "unordered_set": UnorderedSet,
    "double_cv": DoubleCV,
    "carms": CARMS,
    "stochastic_triples": StochasticTriples,
    "local_disarm": LocalDisARM,
    "nvil": NVIL,
    "vimco": VIMCO,
    "mvd": MeasureValued,
    "delta_cv": DeltaCV,
    "stl": StickingTheLanding,
    "dreg": DReG,
    "grpo": GRPO,
    "dr_grpo": DrGRPO,
    "reinforce_optimal_baseline": ReinforceOptimalBaseline,
    "lax": Lax,
    "rqmc_reparam": RQMCReparam,
    "implicit_reparam": ImplicitReparam,
    "generalized_reparam": GeneralizedReparam,
    "rsvi": RSVI,
    "sst": SST,
    "st_sst": STSST,
    "rodeo": Rodeo,
    "igr": IGR,
    "decoupled_st": DecoupledSTGumbelSoftmax,
    "gengs": GenGS,
}


def get_estimator(name: str) -> type[Estimator]:
    """The built-in estimator class registered as ``name``; the error lists the valid names.

    Plugins' estimators are not here: the harness looks names up in the registry of its
    invocation (``bench.registry.estimator_class``), which this layer cannot import.
    """
    try:
        return ESTIMATORS[name]
    except KeyError:
        raise ValueError(
            f"unknown estimator {name!r}; valid estimators: {', '.join(ESTIMATORS)}"
        ) from None


__all__ = ["ESTIMATORS", "Estimator", "State", "Surrogate", "get_estimator"]
