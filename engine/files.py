"""Attachments: uploaded files with size and type limits, stored outside the database."""
from __future__ import annotations

import hashlib
import mimetypes
import os
import uuid
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .config import Config
from .errors import NotFound, ValidationFailed
from .forms import FieldError
from .models import Attachment, User

# Leading bytes of the binary types we accept; text/plain and CSV-like types are checked for NUL bytes.
_MAGIC = {
    "application/pdf": (b"%PDF-",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "application/zip": (b"PK\x03\x04",),
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": (b"PK\x03\x04",),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": (b"PK\x03\x04",),
    "application/ofd": (b"PK\x03\x04",),
    "application/msword": (b"\xd0\xcf\x11\xe0",),
    "application/vnd.ms-excel": (b"\xd0\xcf\x11\xe0",),
}


def megabytes(size: int) -> str:
    """A size limit as people read it: "20" (MB), or "0.6" when it is not whole."""
    return f"{size / (1024 * 1024):.1f}".removesuffix(".0")


def _reject(message: str, code: str, limit=None):
    raise ValidationFailed(message, errors={"file": [FieldError(code, limit).as_dict() | {"message": message}]})


def _path(config: Config, attachment_id: str) -> Path:
    return config.uploads / attachment_id[:2] / attachment_id


def store(session: Session, config: Config, user: User, filename: str, content_type: str | None,
          stream: BinaryIO) -> Attachment:
    """Save an upload after checking its size and that its content matches an allowed type."""
    filename = os.path.basename(filename or "").strip() or "file"
    ctype = (content_type or "").split(";")[0].strip().lower()
    if not ctype or ctype == "application/octet-stream":
        ctype = mimetypes.guess_type(filename)[0] or ""
    if ctype not in config.allowed_upload_types:
        _reject(f"files of type '{ctype or 'unknown'}' are not accepted", "file_type")
    attachment_id = str(uuid.uuid4())
    target = _path(config, attachment_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".part")
    digest, size, head = hashlib.sha256(), 0, b""
    try:
        with open(tmp, "wb") as out:
            while chunk := stream.read(64 * 1024):
                size += len(chunk)
                if size > config.max_upload_bytes:
                    mb = megabytes(config.max_upload_bytes)
                    _reject(f"the file is larger than {mb} MB", "file_too_large", mb)
                if len(head) < 16:
                    head += chunk[: 16 - len(head)]
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if size == 0:
            _reject("the file is empty", "file_empty")
        magic = _MAGIC.get(ctype)
        if magic and not any(head.startswith(m) for m in magic):
            _reject(f"the file's content is not {ctype}", "file_content")
        if ctype == "text/plain" and b"\0" in head:
            _reject("the file's content is not text", "file_content")
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    row = Attachment(id=attachment_id, filename=filename[:255], content_type=ctype, size=size,
                     sha256=digest.hexdigest(), uploaded_by_id=user.id)
    session.add(row)
    session.flush()
    return row


def usable(session: Session, user: User, value, instance_id: int) -> bool:
    """May this attachment id go into this instance's data? Own fresh uploads, or files already in it."""
    attachment_id = value.get("id") if isinstance(value, dict) else value
    row = session.get(Attachment, str(attachment_id)) if attachment_id else None
    if row is None:
        return False
    if row.instance_id is None:
        return row.uploaded_by_id == user.id
    return row.instance_id == instance_id


def attach(session: Session, values: list, instance_id: int) -> None:
    """Bind fresh uploads to the instance they were submitted to."""
    ids = [str(v.get("id") if isinstance(v, dict) else v) for v in values]
    if ids:
        session.execute(update(Attachment).where(Attachment.id.in_(ids), Attachment.instance_id.is_(None))
                        .values(instance_id=instance_id))


def describe(session: Session, ids: list[str]) -> dict[str, Attachment]:
    rows = session.scalars(select(Attachment).where(Attachment.id.in_([str(i) for i in ids]))) if ids else []
    return {r.id: r for r in rows}


def open_for(session: Session, config: Config, user: User, attachment_id: str) -> tuple[Attachment, Path]:
    """An attachment the user may read: their own upload, or a file of an instance they may see."""
    from .instances import get as get_instance

    row = session.get(Attachment, attachment_id)
    if row is None:
        raise NotFound("attachment not found")
    if row.instance_id is None:
        if row.uploaded_by_id != user.id:
            raise NotFound("attachment not found")
    else:
        get_instance(session, user, row.instance_id)
    return row, _path(config, row.id)
