"""WTTM, weighted transformed teacher matching (Zheng & Yang, ICLR 2024): TTM (``methods/ttm.py``) with each
sample's divergence weighted by sum_k p_t,k^gamma, the power sum of its teacher distribution before
renormalisation. Its defaults (gamma 0.2, beta 4) are the authors' README example for WTTM, where it was
combined with CRD; the paper's per-pair values were not available to this project (see ``methods/ttm.py``).
"""
from yacs.config import CfgNode as CN

from mdistiller_ext.methods.ttm import TTM, transformed_node, transformed_rules
from mdistiller_ext.registry import register_method

GAMMA, BETA = 0.2, 4.0  # the authors' README example of WTTM, for every pair


def node() -> CN:
    return transformed_node(GAMMA, BETA)


def recipe(dataset: str, pair_name: str, pair) -> dict:
    return {"WTTM": {"CE_WEIGHT": 1.0, "GAMMA": GAMMA, "BETA": BETA}}


@register_method("WTTM", summary="WTTM: TTM with each sample weighted by its teacher distribution's power sum",
                 node=node, recipe=recipe, rules=transformed_rules("WTTM"))
class WTTM(TTM):
    NODE, WEIGHTED = "WTTM", True
