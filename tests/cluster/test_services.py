"""The services the cluster tests rely on start, answer and restart (a failure points at setup)."""

from __future__ import annotations

import boto3
import psycopg

from tests.services import Postgres, S3Server


def test_postgres_database_answers_and_survives_an_immediate_restart(postgres: Postgres, pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (v int)")
        conn.execute("INSERT INTO t VALUES (42)")
    postgres.restart(immediate=True)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT v FROM t").fetchall() == [(42,)]


def test_s3_endpoint_keeps_objects_across_stop_and_start(s3: S3Server, bucket: str) -> None:
    client = boto3.client("s3", endpoint_url=s3.endpoint, region_name="us-east-1")
    client.put_object(Bucket=bucket, Key="a/b", Body=b"bytes")
    s3.stop()
    s3.start()
    assert client.get_object(Bucket=bucket, Key="a/b")["Body"].read() == b"bytes"
