"""ReviewKD: mdistiller's implementation only. Registered for its recipe: the feature shapes come
from the models, the weights from mdistiller's configs."""
from ..baselines import reviewkd_settings, zoo_shapes
from ..recipes import IMAGENET_FEATURE_SOLVER
from ..registry import Method, add

CIFAR_WEIGHT = 5.0
# mdistiller's ImageNet settings that are not shape-derived: (REVIEWKD_WEIGHT, MAX_MID_CHANNEL)
IMAGENET = {"r34_r18": (1.0, 512), "r50_mv1": (8.0, 256)}


def recipe(dataset: str, pair_name: str, pair) -> dict:
    imagenet = dataset == "imagenet"
    derived = reviewkd_settings(zoo_shapes(dataset, pair.student), zoo_shapes(dataset, pair.teacher), stu_preact=imagenet)
    if not imagenet:
        return {"REVIEWKD": {"REVIEWKD_WEIGHT": CIFAR_WEIGHT, **derived}}
    weight, mid = IMAGENET[pair_name]
    return {"SOLVER": dict(IMAGENET_FEATURE_SOLVER),
            "REVIEWKD": {"CE_WEIGHT": 1.0, "REVIEWKD_WEIGHT": weight, "WARMUP_EPOCHS": 1, **derived, "MAX_MID_CHANNEL": mid}}


add(Method("REVIEWKD", None, slug="reviewkd", summary="knowledge review (mdistiller only)", recipe=recipe,
           host_provides=True))
