"""Host-compatible model zoo, used when mdistiller is not installed.

Each dict maps the host's model name to ``(constructor, teacher checkpoint path or None)`` for
CIFAR and to a constructor for ImageNet, exactly as ``mdistiller.models`` does.
"""
from mdistiller_ext.host.standalone.models.cifar.mobilenetv2 import MobileNetV2
from mdistiller_ext.host.standalone.models.cifar.resnet import resnet8, resnet8x4, resnet14, resnet20, resnet32, resnet32x4, resnet44, resnet56, resnet110
from mdistiller_ext.host.standalone.models.cifar.resnet_v2 import ResNet18, ResNet50
from mdistiller_ext.host.standalone.models.cifar.shufflenet import ShuffleV1, ShuffleV2
from mdistiller_ext.host.standalone.models.cifar.vgg import vgg8, vgg11, vgg13, vgg16, vgg19
from mdistiller_ext.host.standalone.models.cifar.wrn import wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2
from mdistiller_ext.host.standalone.models.imagenet import mobilenetv1 as _imagenet_mbv1
from mdistiller_ext.host.standalone.models.imagenet import resnet as _imagenet_resnet

CIFAR_TEACHERS = ("resnet56", "resnet110", "resnet32x4", "ResNet50", "wrn_40_2", "vgg13")


def _teacher_path(name: str) -> str:
    return f"{name}_vanilla/ckpt_epoch_240.pth"


_CIFAR = {
    "resnet56": resnet56, "resnet110": resnet110, "resnet32x4": resnet32x4, "ResNet50": ResNet50,
    "wrn_40_2": wrn_40_2, "vgg13": vgg13,
    "resnet8": resnet8, "resnet14": resnet14, "resnet20": resnet20, "resnet32": resnet32,
    "resnet44": resnet44, "resnet8x4": resnet8x4, "ResNet18": ResNet18, "wrn_16_1": wrn_16_1,
    "wrn_16_2": wrn_16_2, "wrn_40_1": wrn_40_1, "vgg8": vgg8, "vgg11": vgg11, "vgg16": vgg16,
    "vgg19": vgg19, "MobileNetV2": MobileNetV2, "ShuffleV1": ShuffleV1, "ShuffleV2": ShuffleV2,
}

# teacher paths are relative to the checkpoint root's ``cifar_teachers`` folder
cifar_model_dict = {n: (fn, _teacher_path(n) if n in CIFAR_TEACHERS else None) for n, fn in _CIFAR.items()}

imagenet_model_dict = {
    "ResNet18": _imagenet_resnet.ResNet18,
    "ResNet34": _imagenet_resnet.ResNet34,
    "ResNet50": _imagenet_resnet.ResNet50,
    "ResNet101": _imagenet_resnet.ResNet101,
    "MobileNetV1": _imagenet_mbv1.MobileNetV1,
}
