"""Object-storage options: the user's keys and AWS variables, turned into what each library takes.

Users name options the way Lance (the Rust ``object_store`` crate) does, with
``--storage-option KEY=VALUE``: ``aws_access_key_id``, ``aws_secret_access_key``,
``aws_session_token``, ``aws_region``/``region``, ``aws_endpoint``/``endpoint``, ``allow_http``,
``aws_skip_signature``... The standard AWS variables fill what the options leave out
(``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL``, ``AWS_REGION``/``AWS_DEFAULT_REGION``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``).

The driver resolves them once (`lance_options`), and the resolved dict travels to Ray workers
with the tasks: workers on other machines need not have the driver's environment, and nothing
deep in the job re-reads it. Lance takes that dict as is; s3fs takes `fsspec_options`.

Credentials are one group: when the options name a key or secret, none of the three
credential variables is taken from the environment (a session token of another identity would
make every request fail).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from urllib.parse import urlparse

from vidlake.errors import UsageError, VidlakeError

log = logging.getLogger(__name__)

S3_PROTOCOLS = frozenset({"s3", "s3a"})

# Canonical (Lance) key -> the spellings users may pass (lower-cased; object_store's aliases).
_ALIASES: dict[str, tuple[str, ...]] = {
    "aws_access_key_id": ("access_key_id", "key"),
    "aws_secret_access_key": ("secret_access_key", "secret"),
    "aws_session_token": ("session_token", "aws_token", "token"),
    "aws_region": ("region", "aws_default_region", "default_region", "region_name"),
    "aws_endpoint": ("endpoint", "aws_endpoint_url", "endpoint_url"),
    "allow_http": ("aws_allow_http",),
    "aws_skip_signature": ("skip_signature", "anon"),
    "aws_virtual_hosted_style_request": ("virtual_hosted_style_request",),
}
_CANONICAL = {alias: key for key, aliases in _ALIASES.items() for alias in (key, *aliases)}
_CREDENTIALS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")

# Canonical key -> environment variables that supply it, first set wins.
_ENV: dict[str, tuple[str, ...]] = {
    "aws_access_key_id": ("AWS_ACCESS_KEY_ID",),
    "aws_secret_access_key": ("AWS_SECRET_ACCESS_KEY",),
    "aws_session_token": ("AWS_SESSION_TOKEN",),
    "aws_region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "aws_endpoint": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"),
    "allow_http": ("AWS_ALLOW_HTTP",),
}

_TRUE = frozenset({"1", "true", "yes", "on"})


# "s3:/bucket/key": a scheme and one slash, a typo of "s3://" that would otherwise be read as
# the local path ./s3:/bucket/key and silently create it.
_ONE_SLASH_URI = re.compile(r"^[a-z][a-z0-9+.-]*:/[^/]")
_URI_START = re.compile(r"^[a-z][a-z0-9+.-]*:/")


def looks_like_uri(text: str) -> bool:
    """Whether TEXT starts as a URI does ("s3://", or the typo "s3:/"), not as a local path."""
    return bool(_URI_START.match(text))


def check_uri(uri: str) -> str:
    """URI unchanged, or a UsageError if it is a scheme with a single slash ("s3:/bucket")."""
    if _ONE_SLASH_URI.match(uri):
        scheme, rest = uri.split(":/", 1)
        raise UsageError(
            f"{uri} has one slash after '{scheme}:': write {scheme}://{rest} "
            f"(or ./{uri} for a local path)"
        )
    return uri


def protocol(uri: str) -> str:
    """The URI's scheme ("s3", "gs", ...), or "file" for a local path.

    Every index, source and output URI passes here before use, so a scheme with one slash
    ("s3:/bucket") is a UsageError here (`check_uri`) rather than a local folder made later.
    """
    check_uri(uri)
    return uri.split("://", 1)[0].lower() if "://" in uri else "file"


def lance_options(
    options: Mapping[str, str] | None, env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The storage options Lance takes: aliases made canonical, AWS variables filled in.

    Idempotent (its output is a valid input). Keys it does not know (object_store's other
    options: ``timeout``, ``aws_sse_kms_key_id``...) pass through unchanged, lower-cased.
    allow_http is set when the endpoint is plain http://, which Lance otherwise refuses.
    """
    env = os.environ if env is None else env
    out: dict[str, str] = {}
    for key, value in (options or {}).items():
        name = key.strip().lower()
        out[_CANONICAL.get(name, name)] = str(value)
    user_credentials = any(k in out for k in _CREDENTIALS[:2])
    for key, variables in _ENV.items():
        if key in out or (user_credentials and key in _CREDENTIALS):
            continue
        value = next((env[v] for v in variables if env.get(v)), None)
        if value is not None:
            out[key] = value
    if out.get("aws_endpoint", "").lower().startswith("http://"):
        out.setdefault("allow_http", "true")
    return out


def fsspec_options(
    uri: str, options: Mapping[str, str] | None, env: Mapping[str, str] | None = None
) -> dict:
    """The keyword arguments of the fsspec filesystem that opens URI, from the same options.

    s3:// gets s3fs's (key, secret, token, endpoint_url, client_kwargs={"region_name": ...},
    anon); a local path gets none; other protocols (gs://, az://...) get the options as given,
    less the AWS ones, since their filesystems name their options themselves.
    """
    scheme = protocol(uri)
    if scheme in ("file", "local"):
        return {}
    if scheme not in S3_PROTOCOLS:
        return {
            k: v
            for k, v in (options or {}).items()
            if not k.lower().startswith("aws_") and k.lower() != "allow_http"
        }
    resolved = lance_options(options, env)
    out: dict = {}
    if resolved.get("aws_skip_signature", "").lower() in _TRUE:
        out["anon"] = True
    for ours, theirs in (
        ("aws_access_key_id", "key"),
        ("aws_secret_access_key", "secret"),
        ("aws_session_token", "token"),
        ("aws_endpoint", "endpoint_url"),
    ):
        if resolved.get(ours):
            out[theirs] = resolved[ours]
    if resolved.get("aws_region"):
        out["client_kwargs"] = {"region_name": resolved["aws_region"]}
    if resolved.get("aws_virtual_hosted_style_request", "").lower() in _TRUE:
        out["config_kwargs"] = {"s3": {"addressing_style": "virtual"}}
    return out


def bucket_and_prefix(uri: str) -> tuple[str, str]:
    """("bucket", "key/prefix") of an s3:// URI."""
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def preflight(
    index_uri: str,
    sources: Iterable[str],
    options: Mapping[str, str] | None,
    *,
    timeout_s: float = 5.0,
) -> None:
    """Checks every S3 bucket the job will touch; raises a one-line VidlakeError if one fails.

    One small list request per bucket (index and sources), made before any Ray work, so that
    an unreachable endpoint, rejected credentials or a missing bucket is a usage error naming
    the URI, not a stack of retries inside every worker. Local paths and other protocols are
    not checked here (listing the sources reports them).
    """
    resolved = lance_options(options)
    seen: set[str] = set()
    for uri in (index_uri, *sources):
        if protocol(uri) not in S3_PROTOCOLS:
            continue
        bucket, prefix = bucket_and_prefix(uri)
        if bucket in seen:
            continue
        seen.add(bucket)
        _check_bucket(uri, bucket, prefix, resolved, timeout_s)


def _s3_client(resolved: Mapping[str, str], timeout_s: float):
    """A botocore S3 client with the resolved options, one attempt, short timeouts."""
    import botocore.session
    from botocore import UNSIGNED
    from botocore.config import Config

    config = Config(
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
        retries={"total_max_attempts": 1, "mode": "standard"},
        signature_version=(
            UNSIGNED if resolved.get("aws_skip_signature", "").lower() in _TRUE else None
        ),
        s3={
            "addressing_style": "virtual"
            if resolved.get("aws_virtual_hosted_style_request", "").lower() in _TRUE
            else "auto"
        },
    )
    session = botocore.session.get_session()
    return session.create_client(
        "s3",
        region_name=resolved.get("aws_region") or None,
        endpoint_url=resolved.get("aws_endpoint") or None,
        aws_access_key_id=resolved.get("aws_access_key_id") or None,
        aws_secret_access_key=resolved.get("aws_secret_access_key") or None,
        aws_session_token=resolved.get("aws_session_token") or None,
        config=config,
    )


# S3 error codes -> what the user should hear.
_DENIED = {
    "InvalidAccessKeyId": "access denied: the access key id is not known to the endpoint",
    "SignatureDoesNotMatch": "access denied: the secret access key is wrong",
    "InvalidToken": "access denied: the session token is invalid",
    "ExpiredToken": "access denied: the session token has expired",
    "AccessDenied": "access denied: the credentials may not list this bucket",
    "403": "access denied: the credentials were refused",
}


def _check_bucket(
    uri: str, bucket: str, prefix: str, resolved: Mapping[str, str], timeout_s: float
) -> None:
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
    )

    endpoint = resolved.get("aws_endpoint") or "AWS S3"
    client = _s3_client(resolved, timeout_s)
    try:
        client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    except NoCredentialsError as exc:
        raise VidlakeError(
            f"{uri}: no AWS credentials found; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "pass --storage-option aws_access_key_id=... aws_secret_access_key=..., or "
            "aws_skip_signature=true for a public bucket"
        ) from exc
    except EndpointConnectionError as exc:
        raise VidlakeError(
            f"{uri}: unreachable endpoint {endpoint} (connection failed); check "
            "AWS_ENDPOINT_URL or --storage-option aws_endpoint=..."
        ) from exc
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket" or status == 404:
            raise VidlakeError(f"{uri}: no such bucket {bucket!r} at {endpoint}") from exc
        if code in _DENIED or status == 403:
            reason = _DENIED.get(code, _DENIED["403"])
            raise VidlakeError(f"{uri}: {reason} (at {endpoint})") from exc
        region = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        hint = region.get("x-amz-bucket-region")
        where = f"; the bucket is in region {hint}, pass aws_region={hint}" if hint else ""
        raise VidlakeError(
            f"{uri}: {endpoint} refused to list the bucket ({code or status}: "
            f"{_first_line(error.get('Message', exc))}){where}"
        ) from exc
    except BotoCoreError as exc:  # timeouts, bad endpoint URLs, TLS failures
        raise VidlakeError(f"{uri}: cannot reach {endpoint}: {_first_line(exc)}") from exc
    log.debug("preflight: %s reachable, credentials accepted, bucket %s exists", uri, bucket)


def _first_line(value: object) -> str:
    text = str(value).strip()
    return text.splitlines()[0] if text else type(value).__name__
