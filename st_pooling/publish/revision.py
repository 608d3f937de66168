"""The revision an export is published under: a commit id, as the MTEB results repository requires.

Three sources, in the order ``st-pooling export`` tries them:

* an explicit ``revision`` (must be a 40-hex commit id for a leaderboard export);
* ``from_content=True``: :func:`content_revision`, a SHA-1 over the saved files, for a model that is not (yet) on the
  Hub; the user opts into it, since the results repository expects the Hub commit;
* otherwise the Hub: :func:`hub_revision` finds the newest commit of the Hub repository whose files are exactly the
  saved folder's (git blob ids and LFS SHA-256 compared), so the revision names the weights that were evaluated.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from huggingface_hub.utils.sha import git_hash

COMMIT_ID = re.compile(r"[0-9a-f]{40}")
CARD_FILE = "README.md"  # rewritten by every push and card edit: not part of the model's identity
MAX_COMMITS_SEARCHED = 30


def is_commit_id(revision: str | None) -> bool:
    return bool(revision) and COMMIT_ID.fullmatch(revision) is not None


def model_files(folder: str | Path) -> dict[str, Path]:
    """The saved model's files by path relative to ``folder`` (posix), the model card and hidden files left out."""
    root = Path(folder)
    files = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        hidden = any(part.startswith(".") for part in relative.split("/"))
        if path.is_file() and relative != CARD_FILE and not hidden:
            files[relative] = path
    if not files:
        raise ValueError(f"{root} holds no model files: save the model there first (model.save(folder))")
    return files


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_revision(folder: str | Path) -> str:
    """A 40-hex id of the saved model's files (paths and SHA-256 of their bytes; the model card excluded)."""
    digest = hashlib.sha1(usedforsecurity=False)
    for relative, path in model_files(folder).items():
        digest.update(f"{relative}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def push_command(folder: str | Path, repo_id: str) -> str:
    return f"hf upload {repo_id} {folder}"


def hub_revision(folder: str | Path, repo_id: str, token: str | None = None) -> str:
    """The newest commit of Hub model ``repo_id`` holding exactly the saved folder's files (the card aside).

    Raises ``ValueError`` naming the push command when the repository cannot be read (offline, missing, private
    without a token) or no recent commit matches the folder.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    local = model_files(folder)
    api = HfApi(token=token)
    hint = (f"push the saved model first: {push_command(folder, repo_id)}; then export again. For a model that is "
            "not on the Hub, --revision-from-content (revision_from_content=True) uses a hash of the saved files "
            "instead (the results repository expects the Hub commit)")
    try:
        commits = api.list_repo_commits(repo_id)[:MAX_COMMITS_SEARCHED]
        for commit in commits:
            remote = {f.path: f for f in api.list_repo_tree(repo_id, revision=commit.commit_id, recursive=True,
                                                            expand=True) if isinstance(f, RepoFile)}
            if _same_files(local, remote):
                return commit.commit_id
    except Exception as error:  # noqa: BLE001 -- offline, missing repository, HTTP errors: all mean "not readable"
        raise ValueError(f"cannot read the Hub repository {repo_id!r} ({type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else ''}): {hint}") from None
    raise ValueError(f"none of the newest {MAX_COMMITS_SEARCHED} commits of {repo_id!r} holds exactly the files of "
                     f"{folder}: {hint}")


def _same_files(local: dict[str, Path], remote: dict) -> bool:
    remote = {path: file for path, file in remote.items() if path != CARD_FILE and not path.startswith(".")}
    if set(local) != set(remote):
        return False
    for relative, path in local.items():
        file = remote[relative]
        if file.lfs is not None:
            if file_sha256(path) != file.lfs.sha256:
                return False
        elif git_hash(path.read_bytes()) != file.blob_id:
            return False
    return True


def resolve_revision(folder: str | Path, repo_id: str, revision: str | None = None, *, from_content: bool = False,
                     leaderboard: bool = True, token: str | None = None) -> str:
    """The revision to publish under (see the module docstring); a leaderboard export needs a commit id."""
    if revision is not None and from_content:
        raise ValueError(f"give either revision={revision!r} or revision_from_content, not both")
    if from_content:
        return content_revision(folder)
    if revision is None:
        return hub_revision(folder, repo_id, token) if leaderboard else content_revision(folder)
    if leaderboard and not is_commit_id(revision):
        raise ValueError(f"revision {revision!r} is not a commit id (40 lowercase hex digits), which the MTEB results "
                         "repository requires: leave it out to read the Hub commit of the pushed model, or pass "
                         "--revision-from-content (revision_from_content=True) for a hash of the saved files")
    return revision
