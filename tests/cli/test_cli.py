"""The deepscreen command, run as a user runs it (a real subprocess, embedded settings)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.support.processes import ROOT, embedded_env


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture()
def env(tmp_path, model_repo):  # type: ignore[no-untyped-def]
    repo = tmp_path / "models"
    shutil.copytree(model_repo / "nsfw", repo / "nsfw")
    return embedded_env(tmp_path / "data", repo, "127.0.0.1:1") | {"JWT_SECRET": "x" * 40}


def test_token_create_prints_a_token_the_server_accepts(env) -> None:  # type: ignore[no-untyped-def]
    from core.settings import load_settings
    from core.tokens import verify_token

    result = run(env, "token", "create", "--subject", "ops", "--scopes", "read")
    assert result.returncode == 0, result.stderr
    principal = verify_token(load_settings(jwt_secret=env["JWT_SECRET"]), result.stdout.strip())
    assert principal.subject == "ops" and principal.has("read") and not principal.has("submit")
    bad = run(env, "token", "create", "--subject", "ops", "--scopes", "root")
    assert bad.returncode != 0 and "unknown scopes" in bad.stderr


def test_db_upgrade_then_apikey_create_and_revoke(env) -> None:  # type: ignore[no-untyped-def]
    assert run(env, "db", "upgrade").returncode == 0
    made = run(env, "apikey", "create", "--subject", "app")
    assert made.returncode == 0 and made.stdout.startswith("ds_")
    key_id = made.stdout.strip().split("_")[1]
    import sqlite3

    db = sqlite3.connect(env["DATA_DIR"] + "/deepscreen.db")
    stored = db.execute("select secret_hash from api_keys where id = ?", (key_id,)).fetchone()[0]
    assert made.stdout.strip().split("_", 2)[2] not in stored  # only the hash is kept
    assert run(env, "apikey", "revoke", key_id).returncode == 0
    assert run(env, "apikey", "revoke", key_id).returncode != 0


def test_models_list_and_verify_refuses_a_tampered_file(env) -> None:  # type: ignore[no-untyped-def]
    listed = run(env, "models", "list")
    assert listed.returncode == 0 and "nsfw" in listed.stdout
    assert run(env, "models", "verify").returncode == 0
    model = f"{env['MODEL_REPOSITORY']}/nsfw/1/model.onnx"
    with open(model, "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\x00\x01\x02\x03")
    refused = run(env, "models", "verify")
    assert refused.returncode == 1
    assert "model_checksum_mismatch" in refused.stderr


def test_bad_setting_is_a_clean_error(env) -> None:  # type: ignore[no-untyped-def]
    result = run(env | {"MAX_UPLOAD_BYTES": "lots"}, "models", "list")
    assert result.returncode != 0
    assert "MAX_UPLOAD_BYTES" in result.stderr and "Traceback" not in result.stderr
