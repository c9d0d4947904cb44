"""CRD: mdistiller's contrastive representation distillation (its trainer, sampler and memory bank;
no implementation here). Registered for its recipe: the embedding input sizes come from the models."""
from ..baselines import crd_settings, zoo_shapes
from ..recipes import IMAGENET_FEATURE_SOLVER
from ..registry import Method, add


def recipe(dataset: str, pair_name: str, pair) -> dict:
    cfg = {"SOLVER": {"TRAINER": "crd"},
           "CRD": {"FEAT": crd_settings(zoo_shapes(dataset, pair.student), zoo_shapes(dataset, pair.teacher))}}
    if dataset == "imagenet":
        cfg["SOLVER"].update(IMAGENET_FEATURE_SOLVER)
    return cfg


# CRD's contrastive sampler lives in mdistiller's CIFAR-100 dataset code: no CIFAR-10 configs
add(Method("CRD", None, slug="crd", summary="contrastive representation distillation (mdistiller only, CUDA)",
           recipe=recipe, datasets=("cifar100", "imagenet"), host_provides=True, needs_num_data=True))
