"""Strict config loading: defaults, overrides, and errors that name the key, file and line."""

import dataclasses
from pathlib import Path

import pytest

from rfai.cli import train_config, train_parser
from rfai.config import Config, ConfigError
from rfai.config_docs import main as config_main
from rfai.config_docs import readme_with_table, render_readme_table, render_yaml
from rfai.config_load import _key_lines, config_to_dict, load_config, save_config

REPO = Path(__file__).resolve().parents[1]


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_config_yaml_holds_exactly_the_dataclass_defaults():
    assert load_config(REPO / "config.yaml") == Config()


def _key_paths(obj, prefix=""):
    """Every dotted key of a config (sections are not keys)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from _key_paths(value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}"


def _undocumented(text: str) -> list[str]:
    """Keys of Config() that `text` (a YAML document) does not set at their own path."""
    present = _key_lines(text)
    return [k for k in _key_paths(Config()) if k not in present]


def test_every_key_has_help():
    def fields(obj, prefix=""):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                yield from fields(value, f"{prefix}{f.name}.")
            else:
                yield f"{prefix}{f.name}", f.metadata.get("help", "")

    assert [path for path, doc in fields(Config()) if not doc.strip()] == []


def test_committed_config_yaml_is_the_generated_one():
    # config.yaml is `python -m rfai.config --write`'s output; edit help in rfai/config.py.
    assert (REPO / "config.yaml").read_text() == render_yaml(Config())
    assert _undocumented(render_yaml(Config())) == []


def test_committed_readme_key_table_is_the_generated_one():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert readme_with_table(readme, render_readme_table(Config())) == readme
    for section in ("student", "student.adapter", "data", "logging", "evaluation"):
        assert f"| `{section}` |" in render_readme_table(Config())


@pytest.mark.parametrize("removed", ["data.seed", "logging.every_steps", "student.adapter.keys"])
def test_a_key_deleted_from_config_yaml_is_caught(removed):
    # The old check looked for `seed:` anywhere, so deleting data.seed (training.seed remains)
    # or logging.every_steps (checkpoint.every_steps remains) passed it.
    text = render_yaml(Config())
    line = _key_lines(text)[removed]
    lines = text.splitlines(keepends=True)
    edited = "".join(lines[: line - 1] + lines[line:])
    assert _undocumented(edited) == [removed]
    assert edited != render_yaml(Config())


def test_readme_table_is_replaced_between_its_header_and_the_next_paragraph():
    readme = "intro\n\n| section | keys and defaults |\n|---|---|\n| `old` | x |\n\nafter\n"
    assert readme_with_table(readme, "T\n") == "intro\n\nT\n\nafter\n"
    with pytest.raises(ValueError, match="expected one line"):
        readme_with_table("no table here\n", "T\n")


def test_generator_check_and_dump(capsys):
    assert config_main(Config(), ["--check"]) == 0
    assert config_main(Config(), ["--dump", "yaml"]) == 0
    assert capsys.readouterr().out == render_yaml(Config())


def test_strict_flag_is_data_strict_in_the_saved_config(tmp_path):
    args = train_parser().parse_args(["--config", str(REPO / "configs" / "tiny.yaml"), "--strict"])
    config = train_config(args)
    assert config.data.strict is True
    save_config(config, tmp_path / "config.yaml")
    saved = (tmp_path / "config.yaml").read_text()
    assert load_config(tmp_path / "config.yaml").data.strict is True
    assert "strict: true" in saved
    plain = train_config(train_parser().parse_args(["--config", str(REPO / "config.yaml")]))
    assert plain.data.strict is False


def test_vocabularies_have_one_home():
    # config validates against the modules that own each vocabulary, not copies of them.
    import rfai.config as config_module
    from rfai import advantages, loss
    from scorers import reward, suite

    assert config_module.LOSS_TYPES is loss.LOSS_TYPES
    assert config_module.SCALE_REWARDS is advantages.SCALE_REWARDS
    assert config_module.REWARD_RULES is reward.REWARD_RULES
    assert set(Config().scoring.weights) == set(suite.KNOWN_SCORERS)
    assert Config().student.system_prompt == Config().teacher.system_prompt


def test_tiny_config_loads():
    config = load_config(REPO / "configs" / "tiny.yaml")
    assert config.student.path == "models/tiny"
    assert config.rollout.group_size == 4


def test_unknown_key_names_path_file_line_and_suggestion(tmp_path):
    path = _write(tmp_path, "rollout:\n  group_size: 4\n  gruop_size: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert f"{path}:3" in message
    assert "'rollout.gruop_size'" in message and "did you mean 'rollout.group_size'" in message


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match=r"c.yaml:1: unknown config key 'trainer'"):
        load_config(_write(tmp_path, "trainer:\n  steps: 3\n"))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("training:\n  steps: ten\n", "'training.steps' must be of type int, got str 'ten'"),
        ("training:\n  steps: 1.5\n", "'training.steps' must be of type int, got float"),
        ("training:\n  compile: 1\n", "'training.compile' must be of type bool, got int"),
        ("rollout: 3\n", "'rollout' must be a mapping"),
        ("student:\n  adapter:\n    keys: q_proj\n", "'student.adapter.keys' must be a list"),
        ("scoring:\n  weights:\n    correctness: high\n", "'scoring.weights.correctness'"),
    ],
)
def test_wrong_types_are_errors(tmp_path, text, fragment):
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, text))
    assert fragment in str(err.value)
    assert "c.yaml:" in str(err.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("rollout:\n  group_size: 1\n", "rollout.group_size: must be >= 2"),
        ("rollout:\n  temperature: 0\n", "rollout.temperature: must be > 0"),
        (
            "grpo:\n  loss_type: ppo\n",
            "grpo.loss_type: 'ppo' is not one of grpo, bnpo, dr_grpo, dapo",
        ),
        ("grpo:\n  beta: -0.1\n", "grpo.beta: must be >= 0"),
        ("grpo:\n  scale_rewards: sometimes\n", "grpo.scale_rewards"),
        ("student:\n  adapter:\n    fine_tune_type: qlora\n", "student.adapter.fine_tune_type"),
        ("scoring:\n  weights: {correctness: 0}\n", "scoring.weights: must not all be 0"),
        (
            "huggingface:\n  upload_datasets: true\n",
            "huggingface.dataset_repo_id: must be set",
        ),
    ],
)
def test_invalid_values_name_the_key_and_line(tmp_path, text, fragment):
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, text))
    assert fragment in str(err.value)
    # The line of the section that holds the bad key: the error points into the file.
    assert "c.yaml:" in str(err.value)


def test_scientific_notation_without_a_dot_is_a_float(tmp_path):
    # YAML 1.1 reads `1e-5` as a string; rfai's loader reads it as the float users mean.
    assert (
        load_config(_write(tmp_path, "training:\n  learning_rate: 1e-5\n")).training.learning_rate
        == 1e-5
    )


def test_overrides_and_model(tmp_path):
    config = load_config(
        None,
        ["training.steps=7", "grpo.loss_type=grpo", "student.adapter.keys=[self_attn.q_proj]"],
        model="models/x",
    )
    assert config.training.steps == 7
    assert config.grpo.loss_type == "grpo"
    assert config.student.adapter.keys == ("self_attn.q_proj",)
    assert config.student.path == "models/x"


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        (
            "training.stepz=5",
            "unknown config key 'training.stepz' (did you mean 'training.steps'?)",
        ),
        ("nope.x=1", "unknown config section 'nope'"),
        ("training", "expected section.key=value"),
        ("rollout.group_size=1", "rollout.group_size: must be >= 2"),
        ("training.steps=abc", "'training.steps' must be of type int"),
    ],
)
def test_bad_overrides(override, fragment):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert fragment in str(err.value)


def test_saved_config_round_trips(tmp_path):
    config = load_config(None, ["training.steps=3", "student.adapter.keys=[a, b]"])
    save_config(config, tmp_path / "resolved.yaml")
    assert load_config(tmp_path / "resolved.yaml") == config
    assert config_to_dict(config)["student"]["adapter"]["keys"] == ["a", "b"]


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "training: [\n"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(_write(tmp_path, "- a\n- b\n"))
