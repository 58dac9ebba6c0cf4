"""Source videos over HTTP for the results page: byte ranges read through fsspec, signed URLs.

A `<video>` element plays by asking for byte ranges (`Range: bytes=...`), and it cannot send
an `Authorization` header. So:

- `SourceFile` answers one request for an indexed video's bytes: 206 Partial Content with
  `Content-Range` for a single range, 200 with the whole file without one (or for a Range this
  server ignores, as RFC 9110 §14.2 allows: several ranges, another unit, a malformed value),
  416 with `Content-Range: bytes */SIZE` for a range that starts past the end. Bytes are read
  through fsspec in CHUNK_BYTES pieces while the response streams (a ranged GET each on
  object storage: nothing is downloaded whole, memory stays bounded). The URI is always the
  one the index recorded for the video; nothing from the request becomes a path.
- `SourceSigner` makes, for a server with a token, URLs of one video's bytes that carry an
  expiry and an HMAC of (video id, expiry) keyed by the token: what `BearerAuth` admits in
  place of the header on that one path. Every replica started with the token signs and checks
  alike; a leaked URL reads that video's bytes, nothing else, until it expires.
"""

from __future__ import annotations

import hashlib
import hmac
import mimetypes
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import parse_qs

from fastapi.responses import Response, StreamingResponse
from fsspec.core import url_to_fs

from vidlake.store.object_store import fsspec_options

CHUNK_BYTES = 1 << 20
SOURCE_URL_TTL_S = 3600
CLOCK_SLACK_S = 60  # seconds a signing replica's clock may run ahead of this one's
SOURCE_PATH = re.compile(r"/videos/([0-9a-f]{16})/source")
_BYTES_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class RangeNotSatisfiable(Exception):
    """A Range that selects no byte of a file of SIZE bytes (a 416)."""

    def __init__(self, size: int):
        super().__init__(f"range not satisfiable: the file has {size} bytes")
        self.size = size


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte offsets, inclusive, of a single `bytes=` range over SIZE bytes; None
    for the whole file: no header, or one this server ignores (several ranges, another unit,
    malformed). RangeNotSatisfiable when the range starts at or past SIZE, or asks for the
    last 0 bytes. A last offset past the end is cut to the end, as RFC 9110 says."""
    if not header:
        return None
    match = _BYTES_RANGE.fullmatch(header.strip().replace(" ", ""))
    if match is None:
        return None
    first, last = match.groups()
    if not first:
        if not last:
            return None
        n = int(last)  # a suffix: the last N bytes
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return max(0, size - n), size - 1
    start = int(first)
    if last and int(last) < start:
        return None  # invalid: ignored
    if start >= size:
        raise RangeNotSatisfiable(size)
    return start, size - 1 if not last else min(int(last), size - 1)


@dataclass(frozen=True)
class SourceFile:
    """One video's bytes where the index recorded them (a local path or an fsspec URI)."""

    uri: str
    fs: object
    path: str
    size: int

    @classmethod
    def open(cls, uri: str, storage_options: dict | None) -> SourceFile:
        """The file at URI with its size; FileNotFoundError when nothing is there any more."""
        fs, path = url_to_fs(uri, **fsspec_options(uri, storage_options))
        info = fs.info(path)
        if info.get("type", "file") != "file":
            raise FileNotFoundError(f"{uri} is not a file")
        return cls(uri=uri, fs=fs, path=path, size=int(info["size"]))

    @property
    def media_type(self) -> str:
        guessed, _ = mimetypes.guess_type(PurePosixPath(self.path).name)
        return guessed if guessed and guessed.startswith("video/") else "application/octet-stream"

    def chunks(self, start: int, stop: int) -> Iterator[bytes]:
        """Bytes start..stop (exclusive) in pieces of at most CHUNK_BYTES."""
        while start < stop:
            end = min(start + CHUNK_BYTES, stop)
            data = self.fs.cat_file(self.path, start=start, end=end)
            if not data:
                return  # the file shrank under us: the client sees a short body
            yield data
            start += len(data)

    def response(self, range_header: str | None, head: bool = False) -> Response:
        """200 or 206 with the bytes (none for HEAD); 416 for a range past the end."""
        headers = {
            "Accept-Ranges": "bytes",
            "Cache-Control": "private, max-age=300",
            "X-Content-Type-Options": "nosniff",
        }
        try:
            selected = parse_range(range_header, self.size)
        except RangeNotSatisfiable as exc:
            return Response(
                status_code=416,
                headers={**headers, "Content-Range": f"bytes */{exc.size}"},
            )
        status = 200
        first, last = 0, self.size - 1
        if selected is not None:
            status = 206
            first, last = selected
            headers["Content-Range"] = f"bytes {first}-{last}/{self.size}"
        headers["Content-Length"] = str(last - first + 1)
        if head:
            return Response(status_code=status, headers=headers, media_type=self.media_type)
        return StreamingResponse(
            self.chunks(first, last + 1),
            status_code=status,
            headers=headers,
            media_type=self.media_type,
        )


class SourceSigner:
    """URLs of /videos/{video_id}/source that a server with TOKEN admits without a header."""

    def __init__(self, token: str, ttl_s: float = SOURCE_URL_TTL_S):
        # A key of its own, derived from the token: the token never appears in a URL.
        self._key = hmac.new(token.encode(), b"vidlake source url", hashlib.sha256).digest()
        self.ttl_s = ttl_s

    def _signature(self, video_id: str, expires: int) -> str:
        message = f"{video_id}\n{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def url(self, video_id: str, now: float | None = None) -> tuple[str, int]:
        """(path and query of the video's bytes, its expiry in Unix seconds)."""
        expires = int((time.time() if now is None else now) + self.ttl_s)
        signature = self._signature(video_id, expires)
        return f"/videos/{video_id}/source?exp={expires}&sig={signature}", expires

    def admits(self, path: str, query_string: bytes, now: float | None = None) -> bool:
        """Whether PATH?QUERY_STRING is a source URL this signer made that has not expired."""
        match = SOURCE_PATH.fullmatch(path)
        if match is None:
            return False
        try:
            params = parse_qs(query_string.decode("latin-1"), max_num_fields=4)
        except ValueError:  # too many fields
            return False
        exp, sig = params.get("exp", []), params.get("sig", [])
        if len(exp) != 1 or len(sig) != 1 or not exp[0].isdigit():
            return False
        expires = int(exp[0])
        current = time.time() if now is None else now
        # A replica whose clock runs ahead may have signed it: a minute's slack on the far end.
        if not current < expires <= current + self.ttl_s + CLOCK_SLACK_S:
            return False
        expected = self._signature(match.group(1), expires)
        return hmac.compare_digest(sig[0].encode(), expected.encode())
