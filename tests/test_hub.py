"""Uploads against a local Hub stand-in (tests/fake_hub.py) reached through HF_ENDPOINT."""

import json
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub.utils import _http

from rfai.cli import export_main, upload_model_main
from rfai.config import Config, ConfigError
from rfai.config_load import config_from_dict, save_config
from rfai.hub import HubError, check_upload_ready, export_dataset, resolve_token, upload_model
from tests.dataset_rows import make_dataset
from tests.fake_hub import FakeHub

TOKEN = "hf_testtoken"


@pytest.fixture
def hub(monkeypatch):
    # conftest.py puts huggingface_hub offline for every test; these talk to 127.0.0.1 only.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    for var in ("HF_TOKEN", "HUGGINGFACE_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    with FakeHub(TOKEN) as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        yield fake
    huggingface_hub.set_client_factory(_http.default_client_factory)


@pytest.fixture
def folder(tmp_path):
    return make_dataset(tmp_path / "datasets", {"train": 12, "validation": 4, "evaluation": 0})


def _export(folder, **kw):
    return export_dataset(folder, "me/data", cli_token=TOKEN, base_delay=0.01, **kw)


def test_export_uploads_exactly_the_dataset_files_in_one_commit(hub, folder):
    url = _export(folder, private=True)
    assert url.startswith(f"{hub.url}/datasets/me/data/commit/")
    files = hub.files("dataset", "me/data")
    # evaluation.jsonl is empty: not uploaded (load_dataset fails on an empty split file).
    assert sorted(files) == ["README.md", "train.jsonl", "validation.jsonl"]
    for name, data in files.items():
        assert data == (folder / name).read_bytes()
        assert TOKEN.encode() not in data
    assert len(hub.commits) == 1 and hub.repos[("dataset", "me/data")]["visibility"] == "private"
    # The token travelled in headers only, never in a request body.
    assert all(TOKEN.encode() not in body for *_, body in hub.requests)
    assert any(h.get("authorization") == f"Bearer {TOKEN}" for _, _, h, _ in hub.requests)


def test_export_into_an_existing_repo_adds_a_commit(hub, folder):
    _export(folder)
    make_dataset(folder, {"train": 2})  # two more rows appended
    _export(folder)
    assert len(hub.commits) == 2
    assert set(hub.commits[1]["files"]) == {"README.md", "train.jsonl"}  # validation unchanged
    assert hub.files("dataset", "me/data")["train.jsonl"].count(b"\n") == 14


def test_dry_run_sends_nothing(hub, folder, capsys):
    assert export_main(["--dataset_dir", str(folder), "--repo_id", "me/data", "--dry-run"]) == 0
    assert hub.requests == []
    out = capsys.readouterr().out
    assert "would upload to public dataset repo me/data" in out
    assert "train.jsonl" in out and "evaluation.jsonl" not in out


def test_corrupted_lines_stop_the_export_with_file_and_line(hub, folder, capsys):
    with (folder / "train.jsonl").open("a") as f:
        f.write('{"prompt": "cut sho\n')
    argv = ["--dataset_dir", str(folder), "--repo_id", "me/data", "--hf_token", TOKEN]
    assert export_main(argv) == 1
    assert f"{folder / 'train.jsonl'}:13: not valid JSON" in capsys.readouterr().err
    assert hub.requests == []


def test_token_precedence(monkeypatch):
    monkeypatch.setenv("HUGGINGFACE_TOKEN", "hf_from_huggingface_token")
    monkeypatch.setenv("HF_TOKEN", "hf_from_hf_token")
    assert resolve_token("hf_cli") == ("hf_cli", "--hf_token")
    assert resolve_token(None) == ("hf_from_huggingface_token", "HUGGINGFACE_TOKEN")
    monkeypatch.delenv("HUGGINGFACE_TOKEN")
    assert resolve_token(None) == ("hf_from_hf_token", "HF_TOKEN")
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HubError, match="no Hugging Face token: pass --hf_token or set"):
        resolve_token(None)


def test_rejected_token_says_so(hub, folder):
    with pytest.raises(HubError, match="token was rejected"):
        export_dataset(folder, "me/data", cli_token="hf_wrong", base_delay=0.01)
    assert hub.repos == {}


def test_no_access_names_the_repo(hub, folder):
    # The repo is missing and create_repo is refused: the commit's 404 names the repo.
    original = hub.route

    def refuse_create(method, path, body):
        if path == "/api/repos/create":
            return 403, {"error": "You don't have the rights"}, {}
        return original(method, path, body)

    hub.route = refuse_create
    with pytest.raises(HubError, match=r"dataset repo 'them/data': not found or no write access"):
        export_dataset(folder, "them/data", cli_token=TOKEN, base_delay=0.01)


def test_malformed_repo_id_is_refused_before_any_request(hub, folder):
    with pytest.raises(HubError, match="not a Hub repo id"):
        export_dataset(folder, "just-a-name", cli_token=TOKEN)
    assert hub.requests == []


def test_dropped_connection_is_retried(hub, folder):
    hub.drop_next("/commit/", times=2)
    _export(folder)
    assert len(hub.commits) == 1
    assert sum("/commit/" in path for _, path, _, _ in hub.requests) == 3


def test_persistent_failure_is_clear_and_leaves_local_files(hub, folder):
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.suffix == ".jsonl"}
    hub.drop_next("/commit/", times=100)
    with pytest.raises(HubError, match=r"uploading to me/data failed after 3 attempts"):
        export_dataset(folder, "me/data", cli_token=TOKEN, retries=2, base_delay=0.01)
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.suffix == ".jsonl"} == before
    assert hub.commits == []


def _run_with_adapter(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    (run / "adapters").mkdir(parents=True)
    save_config(Config(), run / "config.yaml")
    (run / "adapters" / "adapters.safetensors").write_bytes(b"weights")
    (run / "adapters" / "adapter_config.json").write_text(json.dumps({"rank": 16}))
    (run / "metrics.jsonl").write_text('{"step": 1, "reward": 0.5}\n')
    return run


def test_model_upload_pushes_adapter_and_card(hub, tmp_path, monkeypatch):
    run = _run_with_adapter(tmp_path)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    argv = ["--run_dir", str(run), "--repo_id", "me/model", "--dataset_repo_id", "me/data"]
    assert upload_model_main(argv) == 0
    files = hub.files("model", "me/model")
    assert sorted(files) == ["README.md", "adapter_config.json", "adapters.safetensors"]
    assert files["adapters.safetensors"] == b"weights"
    assert b"datasets:\n- me/data" in files["README.md"]


def test_model_upload_without_adapter_is_an_error(tmp_path):
    run = _run_with_adapter(tmp_path)
    (run / "adapters" / "adapters.safetensors").unlink()
    with pytest.raises(HubError, match=r"lacks .*adapters\.safetensors.*train first"):
        upload_model(run, "me/model", base_model="x/y", cli_token=TOKEN)


def test_config_checks_upload_settings(monkeypatch):
    with pytest.raises(ConfigError, match=r"huggingface\.model_repo_id: must be set"):
        config_from_dict({"huggingface": {"upload_model": True}})
    with pytest.raises(ConfigError, match="not a Hub repo id"):
        config_from_dict({"huggingface": {"dataset_repo_id": "no-slash"}})
    with pytest.raises(ConfigError, match="fuse_model: only applies with"):
        config_from_dict({"huggingface": {"fuse_model": True}})
    config = config_from_dict({"huggingface": {"upload_datasets": True, "dataset_repo_id": "a/b"}})
    for var in ("HF_TOKEN", "HUGGINGFACE_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(HubError, match="no Hugging Face token"):
        check_upload_ready(config)


def test_fused_model_is_built_with_mlx_lm_and_uploaded(hub, tmp_path, tiny_model_dir):
    from rfai.config import StudentConfig
    from rfai.student import load_student

    run = _run_with_adapter(tmp_path)
    student = load_student(StudentConfig(path=str(tiny_model_dir)), seed=0)
    student.save_adapter(run / "adapters")
    upload_model(
        run, "me/model", base_model=str(tiny_model_dir), cli_token=TOKEN, fuse=True, base_delay=0.01
    )
    files = hub.files("model", "me/model")
    assert {"fused/config.json", "fused/model.safetensors", "fused/tokenizer.json"} <= set(files)
    assert "fused/README.md" not in files  # mlx_lm's own card; the repo's README covers both
    assert b"mlx_lm.generate --model rfai-model/fused" in files["README.md"]


def test_private_in_the_run_config_makes_the_repo_private(hub, folder, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    save_config(config_from_dict({"huggingface": {"private": True}}), run / "config.yaml")
    argv = ["--dataset_dir", str(folder), "--repo_id", "me/data", "--hf_token", TOKEN]
    assert export_main([*argv, "--run_dir", str(run)]) == 0
    assert hub.repos[("dataset", "me/data")]["visibility"] == "private"
    assert "private: true" in hub.files("dataset", "me/data")["rfai_config.yaml"].decode()


def test_a_row_holding_a_token_in_its_error_stops_the_export(hub, folder, capsys):
    # A row from an rfai that did not scrub (or edited by hand): a program printed a key.
    rows = (folder / "train.jsonl").read_text().splitlines()
    leaked = json.loads(rows[4]) | {"error": "runtime_error: hf_Q3v9XkLm2PzR8tYwB4nJc7HdF1sGaE6uKo"}
    rows[4] = json.dumps(leaked)
    (folder / "train.jsonl").write_text("\n".join(rows) + "\n")
    argv = ["--dataset_dir", str(folder), "--repo_id", "me/data", "--hf_token", TOKEN]
    assert export_main(argv) == 1
    err = capsys.readouterr().err
    assert f"{folder / 'train.jsonl'}:5: field 'error' holds a token-shaped string" in err
    assert "Hugging Face token" in err and "scrub_error" in err
    assert "hf_Q3v9" not in err  # the report names the kind, never the token
    assert hub.requests == []


@pytest.mark.parametrize("failure", ["no token", "upload fails"])
def test_regression_export_rewrites_the_card_before_failing(hub, folder, failure, monkeypatch):
    """export_datasets.py used to regenerate README.md before the token check and the upload,
    so a failed export changed a local file. Now every local file is byte-identical after it."""
    (folder / "README.md").write_text("the user's own card\n")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    if failure == "no token":
        monkeypatch.setenv("HF_HOME", str(folder.parent / "hf-home"))  # no saved login either
        with pytest.raises(HubError, match="token"):
            export_dataset(folder, "me/data", base_delay=0.01)
    else:
        hub.drop_next("/commit/", times=100)
        with pytest.raises(HubError, match="failed after"):
            export_dataset(folder, "me/data", cli_token=TOKEN, retries=1, base_delay=0.01)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    # A successful export writes the card it uploaded.
    hub.drop_next("/commit/", times=0)
    _export(folder)
    assert (folder / "README.md").read_bytes() == hub.files("dataset", "me/data")["README.md"]
    assert (folder / "README.md").read_text() != "the user's own card\n"
