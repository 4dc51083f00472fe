"""The IAM split on a moto_server that enforces IAM (INITIAL_NO_AUTH_ACTION_COUNT): the
workstation's credential (the boto3 chain: wrap and key lifecycle) cannot decrypt or
rewrap; only the decrypt role's credential, passed in for a session, can."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from custodian.backends.aws_kms import DecryptCredential
from custodian.errors import BackendError
from tests.conftest import unlock
from tests.integration.kms.conftest import MotoServer, backend, kms_home, start_moto
from tests.integration.kms.test_kms_service import encrypt

# The policies of docs/operator-guide.md ("AWS KMS: the IAM split"), Resource narrowed there.
WORKSTATION = ["kms:Encrypt", "kms:DescribeKey", "kms:ListAliases", "kms:CreateKey",
               "kms:CreateAlias", "kms:UpdateAlias", "kms:TagResource", "kms:DisableKey",
               "kms:ScheduleKeyDeletion"]  # fmt: skip
DECRYPT = ["kms:Decrypt", "kms:ReEncrypt*", "kms:DescribeKey"]
SETUP_CALLS = 6  # the IAM calls below, made before moto starts enforcing


@pytest.fixture
def iam_moto() -> Iterator[tuple[MotoServer, dict[str, Any]]]:
    server = start_moto({"INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_CALLS)})
    iam = boto3.client("iam", region_name="us-east-1", endpoint_url=server.url,
                       aws_access_key_id="setup", aws_secret_access_key="setup")  # fmt: skip
    keys: dict[str, Any] = {}
    for user, actions in (("workstation", WORKSTATION), ("decrypt", DECRYPT)):
        iam.create_user(UserName=user)
        allow = {"Effect": "Allow", "Action": actions, "Resource": "*"}
        policy = {"Version": "2012-10-17", "Statement": [allow]}
        iam.put_user_policy(UserName=user, PolicyName="kms", PolicyDocument=json.dumps(policy))
        keys[user] = iam.create_access_key(UserName=user)["AccessKey"]
    yield server, keys
    server.stop()


def cred(k: dict[str, Any]) -> DecryptCredential:
    return DecryptCredential.from_json(
        json.dumps({"AccessKeyId": k["AccessKeyId"], "SecretAccessKey": k["SecretAccessKey"]})
    )


def test_the_workstation_credential_cannot_decrypt(
    iam_moto: tuple[MotoServer, dict[str, Any]],
    home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Attack: the account holder at the workstation uses the credential they have to
    open a DEK. KMS refuses (AccessDeniedException), named clearly; the decrypt role's
    credential, released into a session, opens it."""
    server, keys = iam_moto
    ws = keys["workstation"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ws["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ws["SecretAccessKey"])
    svc, cast = kms_home(home, server.url)
    try:
        encrypt(svc, cast, tmp_path, 2)
        be = backend(svc)
        b = svc.catalog.backups()[0]
        from custodian.backends.base import DekRef

        ref = DekRef(b.id, b.kek, b.kek_version, b.wrapped_dek)
        with be.decrypt_session(cred(ws)), pytest.raises(BackendError, match="denied Decrypt"):
            be.unwrap([ref])
        from tests.conftest import next_code

        svc.keys.rotate("offsite", next_code(svc, cast.alice), by=unlock(svc, cast.alice))
        with be.decrypt_session(cred(ws)), pytest.raises(BackendError, match="denied ReEncrypt"):
            svc.keys.rewrap("offsite", by=unlock(svc, cast.alice))
        with be.decrypt_session(cred(keys["decrypt"])):
            (dek,) = be.unwrap([ref])
            assert len(dek) == 32  # type: ignore[arg-type]
            assert svc.keys.rewrap("offsite", by=unlock(svc, cast.alice)).finished
        # and the decrypt credential is no use for anything else: it makes no key
        c = boto3.client("kms", region_name="eu-west-1", endpoint_url=server.url,
                         aws_access_key_id=keys["decrypt"]["AccessKeyId"],
                         aws_secret_access_key=keys["decrypt"]["SecretAccessKey"])  # fmt: skip
        with pytest.raises(c.exceptions.ClientError, match="AccessDenied"):
            c.create_key()
    finally:
        svc.close()
