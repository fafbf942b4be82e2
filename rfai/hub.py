"""All traffic with the Hugging Face Hub: datasets and models, each pushed in one commit.

One path serves `export_datasets.py`, `python -m rfai.upload_model` and the uploads at the end
of training:
1. the token comes from `--hf_token`, then `HUGGINGFACE_TOKEN`, then `HF_TOKEN` (never the
   client's saved login, so what is used is always what the user named);
2. `whoami` checks the token first, so a bad token fails before anything is created;
3. `create_repo(exist_ok=True)`: an existing repo gets a new commit, not an error;
4. `create_commit` with one `CommitOperationAdd` per file: one commit for the whole folder.
   Not `upload_folder`: with hf_xet installed it commits large folders in several parts.
   The Hub's preupload answer decides per file: small text files travel inside the commit
   request; large or binary files (over ~10 MB, safetensors) are first sent to the Hub's
   LFS/Xet storage in chunks, with huggingface_hub's progress bars, and the commit refers to
   them by hash, so no request has to carry a whole large file.
Time-outs, dropped connections, 408/429/5xx are retried with exponential backoff; every
request has a time limit (huggingface_hub's default client has none). A retry after a commit
whose answer was lost does not commit twice: preupload reports the files as unchanged and
the commit is skipped. Nothing local is changed by a failed upload.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx2
from huggingface_hub import CommitOperationAdd, HfApi, set_client_factory
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from rfai.card import CARD, PUBLIC_CONFIG, dataset_card, model_card
from rfai.config import HUB_REPO_ID as REPO_ID
from rfai.config import Config
from rfai.dataset_schema import split_files, validate_folder
from rfai.student import ADAPTER_CONFIG, ADAPTER_WEIGHTS

TOKEN_SOURCES = ("--hf_token", "HUGGINGFACE_TOKEN", "HF_TOKEN")
TRANSIENT_STATUS = (408, 429, 500, 502, 503, 504)
TRANSIENT_ERRORS = (httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError)
T = TypeVar("T")


class HubError(RuntimeError):
    """An upload cannot be done; the message says which repo, why, and what to do."""


def resolve_token(cli_token: str | None = None) -> tuple[str, str]:
    """(token, where it came from): `--hf_token`, then HUGGINGFACE_TOKEN, then HF_TOKEN."""
    for source, value in zip(
        TOKEN_SOURCES,
        (cli_token, os.environ.get("HUGGINGFACE_TOKEN"), os.environ.get("HF_TOKEN")),
        strict=True,
    ):
        if value and value.strip():
            return value.strip(), source
    raise HubError(
        "no Hugging Face token: pass --hf_token or set HUGGINGFACE_TOKEN or HF_TOKEN to a token "
        "with write access (https://huggingface.co/settings/tokens)"
    )


def check_repo_id(repo_id: str, key: str = "--repo_id") -> None:
    if not REPO_ID.match(repo_id or ""):
        raise HubError(f"{key}: {repo_id!r} is not a Hub repo id; expected ORG/NAME")


def check_upload_ready(config: Config, cli_token: str | None = None) -> None:
    """Fail at start-up, not after training, when a configured upload could not happen."""
    hf = config.huggingface
    if hf.upload_datasets:
        check_repo_id(hf.dataset_repo_id, "huggingface.dataset_repo_id")
    if hf.upload_model:
        check_repo_id(hf.model_repo_id, "huggingface.model_repo_id")
    if hf.upload_datasets or hf.upload_model:
        resolve_token(cli_token)


def _use_timeout(seconds: float) -> None:
    # huggingface_hub's shared client waits forever (timeout=None); a stalled connection
    # must become a TimeoutException that the retry loop below sees.
    from huggingface_hub.utils import _http

    def factory() -> httpx2.Client:
        client = _http.default_client_factory()
        client.timeout = httpx2.Timeout(seconds)
        return client

    set_client_factory(factory)


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, TRANSIENT_ERRORS):
        return True
    return isinstance(exc, HfHubHTTPError) and (
        exc.response is not None and exc.response.status_code in TRANSIENT_STATUS
    )


def with_retries(
    call: Callable[[], T],
    what: str,
    *,
    retries: int,
    base_delay: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`call()`, retried `retries` times on transient errors with delays 1, 2, 4, ... (max 60) s."""
    for attempt in range(retries + 1):
        try:
            return call()
        except Exception as exc:
            if not _is_transient(exc):
                raise
            if attempt == retries:
                raise HubError(
                    f"{what} failed after {retries + 1} attempts: {type(exc).__name__}: {exc}. "
                    "Local files are unchanged; run the same command again to retry."
                ) from exc
            delay = min(60.0, base_delay * 2**attempt)
            print(f"{what}: {type(exc).__name__}; retrying in {delay:.1f}s", file=sys.stderr)
            sleep(delay)
    raise AssertionError("unreachable")


def _explain(exc: HfHubHTTPError, repo_id: str, repo_type: str, user: str) -> HubError:
    status = exc.response.status_code if exc.response is not None else None
    if isinstance(exc, RepositoryNotFoundError) or status in (401, 403, 404):
        return HubError(
            f"{repo_type} repo {repo_id!r}: not found or no write access for user {user!r} "
            f"(HTTP {status}). Check the repo id (ORG/NAME, and that it is a {repo_type} repo) "
            f"and that the token may write to namespace {repo_id.split('/')[0]!r}."
        )
    return HubError(f"{repo_type} repo {repo_id!r}: the Hub refused the upload: {exc}")


def upload_files(
    folder: Path,
    files: list[str],
    *,
    repo_id: str,
    repo_type: str,
    token: str,
    private: bool,
    commit_message: str,
    retries: int = 5,
    timeout_seconds: float = 120.0,
    base_delay: float = 1.0,
    contents: dict[str, bytes] | None = None,
) -> str:
    """Create `repo_id` if needed and commit `files` (relative to `folder`) in one commit;
    a file named in `contents` is uploaded from those bytes, not read from `folder`."""
    contents = contents or {}
    check_repo_id(repo_id)
    _use_timeout(timeout_seconds)
    # HF_ENDPOINT is read here, not at import as huggingface_hub.constants does.
    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)
    kw: dict[str, Any] = {"retries": retries, "base_delay": base_delay}
    try:
        user = with_retries(lambda: api.whoami(token=token), "token check", **kw)["name"]
    except HfHubHTTPError as exc:
        if exc.response is not None and exc.response.status_code == 401:
            raise HubError(
                "the Hugging Face token was rejected (HTTP 401: invalid or expired). Create a "
                "token with write access at https://huggingface.co/settings/tokens"
            ) from None
        raise HubError(f"token check failed: {exc}") from None
    try:
        with_retries(
            lambda: api.create_repo(
                repo_id, repo_type=repo_type, private=private, exist_ok=True, token=token
            ),
            f"creating {repo_type} repo {repo_id}",
            **kw,
        )

        def commit() -> Any:
            ops = [CommitOperationAdd(f, contents.get(f) or str(folder / f)) for f in files]
            return api.create_commit(
                repo_id, ops, commit_message=commit_message, repo_type=repo_type, token=token
            )

        info = with_retries(commit, f"uploading to {repo_id}", **kw)
    except HfHubHTTPError as exc:
        raise _explain(exc, repo_id, repo_type, user) from None
    return str(info.commit_url)


def _describe(folder: Path, files: list[str], contents: dict[str, bytes] | None = None) -> str:
    contents = contents or {}
    sizes = [len(contents[f]) if f in contents else (folder / f).stat().st_size for f in files]
    lines = [f"  {f}  ({s / 1e6:.2f} MB)" for f, s in zip(files, sizes, strict=True)]
    return "\n".join([*lines, f"  total {sum(sizes) / 1e6:.2f} MB in {len(files)} file(s)"])


def dataset_files(folder: Path) -> list[str]:
    """What a dataset repo receives: the card, the public config, the non-empty splits."""
    extra = [CARD] + [name for name in (PUBLIC_CONFIG,) if (folder / name).is_file()]
    return extra + [p.name for p in split_files(folder).values()]


def export_dataset(
    folder: str | Path,
    repo_id: str,
    *,
    cli_token: str | None = None,
    private: bool = False,
    dry_run: bool = False,
    run_dir: str | Path | None = None,
    retries: int = 5,
    timeout_seconds: float = 120.0,
    base_delay: float = 1.0,
) -> str | None:
    """Validate every split, regenerate the card, upload in one commit; returns the commit url.

    The card is uploaded from memory and written to the folder only after the upload
    succeeded (a dry run writes it, as the preview it asks for): a failed upload changes no
    local file. Raises DatasetValidationError (file:line of each broken line), HubError.
    """
    folder = Path(folder)
    check_repo_id(repo_id)
    sizes = validate_folder(folder)
    card = dataset_card(folder, run_dir=run_dir, repo_id=repo_id).encode("utf-8")
    files = dataset_files(folder)
    visibility = "private" if private else "public"
    print(f"dataset {folder}: {sizes} rows, valid")
    if dry_run:
        (folder / CARD).write_bytes(card)
        print(f"card written to {folder / CARD}")
        print(f"dry run: would upload to {visibility} dataset repo {repo_id} in one commit:")
        print(_describe(folder, files))
        return None
    token, source = resolve_token(cli_token)
    print(f"uploading to {visibility} dataset repo {repo_id} (token from {source}):")
    print(_describe(folder, files, {CARD: card}))
    url = upload_files(
        folder,
        files,
        repo_id=repo_id,
        repo_type="dataset",
        token=token,
        private=private,
        commit_message=f"rfai: {sum(sizes.values())} rows ({', '.join(sizes)})",
        retries=retries,
        timeout_seconds=timeout_seconds,
        base_delay=base_delay,
        contents={CARD: card},
    )
    (folder / CARD).write_bytes(card)
    print(f"uploaded: {url}; card written to {folder / CARD}")
    return url


def publish_dataset(config: Config, run_dir: str | Path, dataset_dir: str | Path) -> str:
    """End of training with `huggingface.upload_datasets`: the export command's path."""
    hf = config.huggingface
    url = export_dataset(
        dataset_dir,
        hf.dataset_repo_id,
        private=hf.private,
        run_dir=run_dir,
        retries=hf.upload_retries,
        timeout_seconds=hf.upload_timeout_seconds,
    )
    assert url is not None
    return url


def fuse_adapter(base_model: str, adapter_dir: Path, save_path: Path) -> None:
    """mlx-lm's own fuse, in a child process so the fused copy's memory is freed after."""
    cmd = [sys.executable, "-m", "mlx_lm", "fuse", "--model", base_model]
    cmd += ["--adapter-path", str(adapter_dir), "--save-path", str(save_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise HubError(f"mlx_lm fuse failed ({' '.join(cmd)}):\n{done.stderr[-2000:]}")
    # mlx_lm writes its own README into the save path; the repo's card describes both.
    (save_path / CARD).unlink(missing_ok=True)


def upload_model(
    run_dir: str | Path,
    repo_id: str,
    *,
    base_model: str,
    cli_token: str | None = None,
    private: bool = False,
    fuse: bool = False,
    dataset_repo_id: str | None = None,
    dry_run: bool = False,
    retries: int = 5,
    timeout_seconds: float = 120.0,
    base_delay: float = 1.0,
) -> str | None:
    """Push `run_dir/adapters` (and with `fuse`, `fused/`) with a model card; one commit."""
    run_dir = Path(run_dir)
    check_repo_id(repo_id)
    adapter_dir = run_dir / "adapters"
    missing = [n for n in (ADAPTER_WEIGHTS, ADAPTER_CONFIG) if not (adapter_dir / n).is_file()]
    if missing:
        raise HubError(f"{adapter_dir} lacks {missing}: train first (the run saves it at the end)")
    token = source = None
    if not dry_run:
        token, source = resolve_token(cli_token)
    with tempfile.TemporaryDirectory(prefix="rfai-model-") as tmp:
        stage = Path(tmp)
        for name in (ADAPTER_WEIGHTS, ADAPTER_CONFIG):
            shutil.copy2(adapter_dir / name, stage / name)
        if fuse:
            fuse_adapter(base_model, adapter_dir, stage / "fused")
        card = model_card(run_dir, repo_id=repo_id, dataset_repo_id=dataset_repo_id, fused=fuse)
        (stage / CARD).write_text(card, encoding="utf-8")
        files = sorted(str(p.relative_to(stage)) for p in stage.rglob("*") if p.is_file())
        visibility = "private" if private else "public"
        if dry_run:
            print(f"dry run: would upload to {visibility} model repo {repo_id} in one commit:")
            print(_describe(stage, files))
            return None
        print(f"uploading to {visibility} model repo {repo_id} (token from {source}):")
        print(_describe(stage, files))
        assert token is not None
        url = upload_files(
            stage,
            files,
            repo_id=repo_id,
            repo_type="model",
            token=token,
            private=private,
            commit_message=f"rfai: adapter{' and fused model' if fuse else ''} from {run_dir.name}",
            retries=retries,
            timeout_seconds=timeout_seconds,
            base_delay=base_delay,
        )
    print(f"uploaded: {url}")
    return url


def publish_model(config: Config, run_dir: str | Path) -> str:
    """End of training with `huggingface.upload_model`: the upload command's path."""
    hf = config.huggingface
    url = upload_model(
        run_dir,
        hf.model_repo_id,
        base_model=config.student.path,
        private=hf.private,
        fuse=hf.fuse_model,
        dataset_repo_id=hf.dataset_repo_id if hf.upload_datasets else None,
        retries=hf.upload_retries,
        timeout_seconds=hf.upload_timeout_seconds,
    )
    assert url is not None
    return url
