"""CRD: mdistiller's contrastive representation distillation (its trainer, sampler and memory bank;
no implementation here). Registered for its recipe: the embedding input sizes come from the models."""
from yacs.config import CfgNode

from mdistiller_ext.host import adapter as host
from mdistiller_ext.methods.feature_shapes import crd_settings, zoo_shapes
from mdistiller_ext.errors import UserError
from mdistiller_ext.recipes import IMAGENET_FEATURE_SOLVER
from mdistiller_ext.registry import Method, add


def recipe(dataset: str, pair_name: str, pair) -> dict:
    cfg = {"SOLVER": {"TRAINER": "crd"},
           "CRD": {"FEAT": crd_settings(zoo_shapes(dataset, pair.student), zoo_shapes(dataset, pair.teacher))}}
    if dataset == "imagenet":
        cfg["SOLVER"].update(IMAGENET_FEATURE_SOLVER)
    return cfg


def check_config(cfg: CfgNode, this_engine: bool) -> None:
    if this_engine and host.HAS_MDISTILLER:
        raise UserError("DISTILLER.TYPE CRD runs only through mdistiller's own trainer on a CUDA device (its contrastive "
                        "sampler and memory bank are mdistiller's, built on the GPU); run it where CUDA is available")


# CRD's contrastive sampler lives in mdistiller's CIFAR-100 dataset code: no CIFAR-10 configs
add(Method("CRD", None, slug="crd", summary="contrastive representation distillation (mdistiller only, CUDA)",
           recipe=recipe, datasets=("cifar100", "imagenet"), host_provides=True, needs_num_data=True,
           host_data=True, check_config=check_config))
