from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from studylib.params import ParamsError, resolve_data_dir
from studylib.study.config import load_params, params_name

from tests.support import PROJECT, minimal_params


@pytest.mark.parametrize("name", ["smoke", "default", "paper", "tuning", "tuning-seed8", "tuning-seed9"])
def test_shipped_parameter_sets_are_valid(name):
    params = load_params(PROJECT / "params" / f"{name}.yaml")
    assert params.raster.image_size % 32 == 0
    assert params.occlusion.patch <= params.raster.image_size


def test_paper_set_has_the_papers_settings():
    params = load_params(PROJECT / "params" / "paper.yaml")
    assert params.raster.image_size == 224
    assert params.train.backbones == ["resnet50", "densenet121"]
    assert params.train.warmup_epochs == 0  # the paper starts at its full lr; only the CPU default warms up
    assert (params.train.epochs, params.train.mixup_epochs, params.train.batch_size) == (125, 75, 64)
    assert (params.train.lr, params.train.lr_step_epochs, params.train.finetune_lr) == (0.01, 25, 1e-4)
    assert params.train.folds == 10
    assert (params.cohorts["hcp"].n_subjects, params.cohorts["abide"].n_subjects) == (1113, 1994)
    assert (params.occlusion.patch, params.occlusion.stride) == (30, 4)


def test_smoke_extends_default_and_overrides_nested_keys():
    default = load_params(PROJECT / "params" / "default.yaml")
    smoke = load_params(PROJECT / "params" / "smoke.yaml")
    assert smoke.train.epochs < default.train.epochs
    # Keys smoke does not set come from default, nested ones included.
    assert smoke.train.momentum == default.train.momentum
    assert smoke.cohorts["hcp"].template == default.cohorts["hcp"].template
    assert smoke.transfer.autism_arms == default.transfer.autism_arms
    assert smoke.cohorts["hcp"].n_subjects != default.cohorts["hcp"].n_subjects
    assert set(smoke.cohorts) == set(default.cohorts) == {"hcp", "abide", "abide1"}


def test_params_name_is_the_file_stem():
    assert params_name("params/smoke.yaml") == "smoke"


def _error(path: Path) -> str:
    with pytest.raises(ParamsError) as caught:
        load_params(path)
    return str(caught.value)


def test_unknown_key_names_key_file_and_allowed_keys(write_params):
    data = minimal_params()
    data["train"]["epochz"] = 3
    path = write_params(data)
    message = _error(path)
    assert f"{path}: train.epochz: unknown key" in message
    assert "epochs" in message  # the allowed keys are listed


def test_unknown_top_level_key(write_params):
    data = minimal_params() | {"learning_rate": 0.1}
    message = _error(write_params(data))
    assert "learning_rate: unknown key" in message


def test_wrong_type_names_key_and_value(write_params):
    data = minimal_params()
    data["train"]["batch_size"] = "sixty-four"
    path = write_params(data)
    message = _error(path)
    assert f"{path}: train.batch_size:" in message
    assert "'sixty-four'" in message


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("train", "epochs", -3, "train.epochs: Input should be greater than 0"),
        ("train", "folds", 1, "train.folds"),
        ("train", "momentum", 1.5, "train.momentum"),
        ("raster", "image_size", 100, "raster.image_size: must be a multiple of 32"),
        ("baselines", "pca_variance", 0, "baselines.pca_variance"),
    ],
)
def test_impossible_values(write_params, section, key, value, expected):
    data = minimal_params()
    data[section][key] = value
    assert expected in _error(write_params(data))


def test_mixup_epochs_cannot_exceed_epochs(write_params):
    data = minimal_params()
    data["train"]["mixup_epochs"] = 5
    assert "mixup_epochs (5) cannot exceed epochs (2)" in _error(write_params(data))
    data["train"]["mixup_epochs"], data["train"]["warmup_epochs"] = 1, 3
    assert "warmup_epochs (3) cannot exceed epochs (2)" in _error(write_params(data))


def test_occlusion_patch_must_fit_the_image(write_params):
    data = minimal_params()
    data["occlusion"]["patch"] = 64
    assert "occlusion.patch (64) is larger than raster.image_size (32)" in _error(write_params(data))


def test_missing_required_key(write_params):
    data = minimal_params()
    del data["train"]["epochs"]
    assert "train.epochs: required key is missing" in _error(write_params(data))


def test_data_dir_that_does_not_exist(write_params, tmp_path):
    data = minimal_params() | {"data_dir": "no/such/folder"}
    path = write_params(data)
    message = _error(path)
    assert f"{path}: data_dir: directory" in message
    assert "does not exist" in message


def test_relative_data_dir_resolves_against_the_file(write_params, tmp_path):
    (tmp_path / "mydata").mkdir()
    params = load_params(write_params(minimal_params() | {"data_dir": "../mydata"}))
    assert params.data_dir == (tmp_path / "mydata").resolve()
    assert resolve_data_dir(params) == (tmp_path / "mydata").resolve()


def test_error_in_a_parent_names_the_parent_file(write_params):
    data = minimal_params()
    data["train"]["epochz"] = 1
    parent = write_params(data, name="base")
    child = write_params({"extends": "base", "seed": 3}, name="child")
    message = _error(child)
    assert f"{parent}: train.epochz: unknown key" in message


def test_override_in_child_is_blamed_on_child(write_params):
    write_params(minimal_params(), name="base")
    child = write_params({"extends": "base", "train": {"epochs": 0}}, name="child")
    assert f"{child}: train.epochs" in _error(child)


def test_extends_missing_file_and_cycles(write_params):
    lonely = write_params({"extends": "nowhere"}, name="lonely")
    assert "extends: 'nowhere' not found" in _error(lonely)
    write_params({"extends": "b"}, name="a")
    b = write_params({"extends": "a"}, name="b")
    assert "cycle" in _error(b)


def test_not_yaml_and_not_a_mapping(write_params):
    assert "not valid YAML" in _error(write_params("train: [unclosed", name="broken"))
    assert "expected a mapping" in _error(write_params("- a\n- b\n", name="listy"))
    assert "parameter file not found" in _error(Path("/no/such/params.yaml"))


def test_real_source_needs_an_existing_path(write_params, tmp_path):
    data = minimal_params()
    data["cohorts"]["hcp"] = {"source": "hcp", "metrics": ["thickness"]}
    message = _error(write_params(data))
    assert "cohorts.hcp.path: required key is missing" in message
    assert "cohorts.hcp.phenotypes: required key is missing" in message
    data["cohorts"]["hcp"].update({"path": str(tmp_path / "nothing"), "phenotypes": str(tmp_path / "none.csv")})
    message = _error(write_params(data))
    assert "cohorts.hcp.path: Value error, '" not in message and "is not an existing directory" in message
    assert "none.csv' is not an existing file" in message


def test_keys_that_do_not_apply_to_a_source_are_errors_naming_them(write_params, tmp_path):
    (tmp_path / "hcp_data").mkdir()
    (tmp_path / "hcp_data" / "behavioral.csv").write_text("Subject,Gender,Age\n")
    data = minimal_params()
    data["cohorts"]["hcp"] = {"source": "hcp", "path": str(tmp_path / "hcp_data"), "n_modes": 20,
                              "phenotypes": str(tmp_path / "hcp_data" / "behavioral.csv"), "metrics": ["sulc"]}
    message = _error(write_params(data))
    assert "cohorts.hcp.n_modes: does not apply to a cohort of source 'hcp'" in message
    assert "path, phenotypes, n_subjects" in message
    data["cohorts"]["hcp"]["source"] = "scanner"
    assert "cohorts.hcp.source: 'scanner' is not a source; choose from simulated, semi-real, hcp" in \
        _error(write_params(data))
    del data["cohorts"]["hcp"]["source"]
    assert "cohorts.hcp.source: required key is missing" in _error(write_params(data))


def test_data_dir_from_environment(monkeypatch, tmp_path, write_params):
    params = load_params(write_params(minimal_params()))
    monkeypatch.setenv("STUDYLIB_DATA", str(tmp_path))
    assert resolve_data_dir(params) == tmp_path.resolve()
    monkeypatch.setenv("STUDYLIB_DATA", str(tmp_path / "missing"))
    with pytest.raises(ParamsError, match="STUDYLIB_DATA"):
        resolve_data_dir(params)
    monkeypatch.delenv("STUDYLIB_DATA")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_data_dir(params) == tmp_path / "studylib_data"


def test_cli_reports_bad_file_with_exit_status(write_params):
    data = minimal_params()
    data["train"]["epochs"] = "many"
    path = write_params(data)
    done = subprocess.run([sys.executable, "-m", "studylib.study.cli", "run", "--params", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"{path}: train.epochs" in done.stderr


def test_cli_params_prints_resolved_values():
    done = subprocess.run([sys.executable, "-m", "studylib.study.cli", "params", str(PROJECT / "params" / "smoke.yaml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "momentum: 0.9" in done.stdout  # inherited from default.yaml


def test_unknown_key_inside_a_named_cohort(write_params):
    data = minimal_params()
    data["cohorts"]["abide"]["sites"] = 3
    message = _error(write_params(data))
    assert "cohorts.abide.sites: does not apply to a cohort of source 'simulated'" in message
    assert "n_sites" in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"source": "semi-real", "task": "sex", "metrics": ["thickness"], "required": False},
         "semi-real ABIDE I cohort classifies autism"),
        ({"source": "semi-real", "task": "autism", "metrics": ["sulc"], "required": False},
         "provides thickness, area, volume; not sulc"),
        ({"metrics": ["area"]}, "source 'simulated' provides thickness, sulc, curvature, myelin; not area"),
        ({"template": "fsaverage5", "metrics": ["myelin"]}, "fsaverage5 has no group myelin map"),
    ],
)
def test_cohort_consistency(write_params, change, expected):
    data = minimal_params()
    if change.get("source", "simulated") != "simulated":
        data["cohorts"]["hcp"] = change
    else:
        data["cohorts"]["hcp"].update(change)
    assert expected in _error(write_params(data))


def test_cohort_names_are_folder_names(write_params):
    data = minimal_params()
    data["cohorts"]["My Cohort"] = data["cohorts"].pop("hcp")
    assert "cohort names must be lower-case identifiers" in _error(write_params(data))


def test_relative_cohort_paths_resolve_against_the_file(write_params, tmp_path):
    (tmp_path / "hcp_data").mkdir()
    (tmp_path / "hcp_data" / "behavioral.csv").write_text("Subject,Gender,Age\n")
    data = minimal_params()
    data["cohorts"]["hcp"] = {"source": "hcp", "path": "../hcp_data", "phenotypes": "../hcp_data/behavioral.csv",
                              "metrics": ["thickness"]}
    params = load_params(write_params(data))
    assert params.cohorts["hcp"].path == (tmp_path / "hcp_data").resolve()


def test_extends_replaces_a_cohort_of_another_source_whole_and_null_drops_one(write_params, tmp_path):
    (tmp_path / "hcp_data").mkdir()
    (tmp_path / "hcp_data" / "behavioral.csv").write_text("Subject,Gender,Age\n")
    base = minimal_params()
    base["cohorts"]["hcp"]["n_subjects"] = 200
    base["cohorts"]["extra"] = dict(base["cohorts"]["abide"])
    write_params(base, name="base")
    mine = write_params({"extends": "base", "cohorts": {
        "hcp": {"source": "hcp", "path": "../hcp_data", "phenotypes": "../hcp_data/behavioral.csv",
                "metrics": ["thickness"]},
        "abide": {"n_subjects": 12},
        "extra": None}}, name="mine")
    params = load_params(mine)
    assert params.cohorts["hcp"].source == "hcp" and params.cohorts["hcp"].n_subjects is None  # nothing inherited
    assert params.cohorts["abide"].n_subjects == 12 and params.cohorts["abide"].n_sites == 2  # same source: merged
    assert "extra" not in params.cohorts


def test_null_over_an_inherited_table_restores_its_default(write_params):
    base = minimal_params()
    base["transfer"] = {"sex_cohort": "hcp", "autism_cohorts": ["abide"], "cohort_arms": {"abide": ["imagenet"]}}
    base["budget"] = {"machine": "2 cores", "minutes": {"01_preprocess": 2}, "total_minutes": 5}
    write_params(base, name="base")
    inherited = load_params(write_params({"extends": "base"}, name="same"))
    assert inherited.transfer.arms_for("abide") == ["imagenet"] and inherited.budget.total_minutes == 5
    params = load_params(write_params({"extends": "base", "transfer": {"cohort_arms": None}, "budget": None},
                                      name="mine"))
    assert params.transfer.cohort_arms == {} and params.transfer.arms_for("abide") == params.transfer.autism_arms
    assert params.budget.minutes == {} and params.budget.total_minutes is None
    assert params.transfer.sex_cohort == "hcp"  # the rest of the section is still inherited


def test_cohort_build_reads_a_file_with_only_its_sections(write_params):
    from studylib.params import DataParams

    data = {key: value for key, value in minimal_params().items() if key in ("seed", "cohorts")}
    with pytest.raises(ParamsError, match="raster: required key is missing"):
        load_params(write_params(data))
    params = load_params(write_params(data), schema=DataParams)
    assert set(params.cohorts) == {"hcp", "abide"}
    data["rastr"] = {}
    with pytest.raises(ParamsError, match="rastr: unknown key"):
        load_params(write_params(data), schema=DataParams)


def test_the_cohort_build_command_takes_a_file_with_only_its_sections(write_params, tmp_path, capsys):
    from studylib.study.cli import main

    data = {key: value for key, value in minimal_params().items() if key in ("seed", "cohorts")}
    data["cohorts"]["hcp"]["n_modes"] = 4
    path = write_params(data, name="cohorts_only")
    assert main(["cohort", "build", "--params", str(path), "--results", str(tmp_path / "results"),
                 "--only", "hcp"]) == 0
    assert "hcp: 8 subjects, 0 QC exclusion(s)" in capsys.readouterr().out


def test_a_required_cohort_without_its_data_fails_at_validation(write_params, tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("STUDYLIB_DATA", str(tmp_path / "empty"))
    data = minimal_params()
    data["cohorts"]["abide1"] = {"source": "semi-real", "task": "autism", "metrics": ["thickness"]}
    message = _error(write_params(data))
    assert "cohorts.abide1: required, but the data directory" in message
    assert "abide1/Phenotypic_V1_0b_preprocessed1.csv" in message
    assert "aparc_conte69" not in message  # the D-K atlas ships with the package
    assert "studylib fetch abide1 --data-dir" in message and "studylib fetch atlas" not in message
    assert "required: false" in message
    data["cohorts"]["abide1"]["required"] = False
    assert load_params(write_params(data)).cohorts["abide1"].required is False


def test_tuning_sets_are_the_default_with_other_seeds():
    default, tuning = (load_params(PROJECT / "params" / f"{name}.yaml") for name in ("default", "tuning"))
    assert tuning.seed != default.seed
    for name in ("hcp", "abide"):
        assert tuning.cohorts[name] == default.cohorts[name]
    assert tuning.train == default.train and tuning.raster == default.raster
    seeds = {default.seed, tuning.seed}
    for name in ("tuning-seed8", "tuning-seed9"):  # further draws of the sex cohort, for the recipe grid
        draw = load_params(PROJECT / "params" / f"{name}.yaml")
        assert draw.seed not in seeds
        seeds.add(draw.seed)
        assert draw.cohorts["hcp"] == default.cohorts["hcp"] and draw.train == default.train
        assert draw.raster == default.raster and draw.flatten == default.flatten


def test_stacking_and_ablation_sections_are_checked_against_the_cohorts(write_params):
    params = minimal_params()
    params["transfer"] = {"sex_cohort": "hcp", "autism_cohorts": ["abide"], "cohort_arms": {"abide": ["imagenet"]}}
    params["ablation"] = {"cohorts": ["abide"]}
    with pytest.raises(ParamsError, match="ablation.cohorts: cohort 'abide' has no '2-stage' k-fold arm"):
        load_params(write_params(params))
    params["ablation"] = {"cohorts": ["hcp"]}
    with pytest.raises(ParamsError, match="ablation.cohorts: 'hcp' is not one of transfer.autism_cohorts"):
        load_params(write_params(params))
    params["ablation"] = {"arm": "imagenet"}
    params["stacking"] = {**params.get("stacking", {}), "grid": {"max_depth": []}}
    with pytest.raises(ParamsError, match="at least one value per key"):
        load_params(write_params(params))
    params["stacking"]["grid"] = {"max_depth": [2], "learning_rate": [0.1]}
    loaded = load_params(write_params(params))
    assert loaded.stacking.grid["max_depth"] == [2] and isinstance(loaded.stacking.grid["max_depth"][0], int)
    assert loaded.stacking.methods[0] == "xgboost" and loaded.ablation.arm == "imagenet"


def test_run_durations_read_as_minutes_and_seconds():
    from studylib.study.cli import duration

    assert duration(3262.2) == "54 min 22 s" and duration(38.4) == "38 s" and duration(60) == "1 min 0 s"
