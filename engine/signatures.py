"""Handwritten signatures: PNG images drawn on the task page, kept with the opinion they sign."""
from __future__ import annotations

import base64
import binascii
import hashlib
import uuid

from sqlalchemy.orm import Session

from .errors import NotFound, ValidationFailed
from .forms import FieldError
from .models import Signature

MAX_BYTES = 512 * 1024
_PREFIX = "data:image/png;base64,"
_PNG = b"\x89PNG\r\n\x1a\n"


def _refuse(code: str, limit=None):
    raise ValidationFailed("the signature is not a usable PNG image",
                           errors={"signature": [FieldError(code, limit).as_dict()]})


def store(session: Session, user, data_url: str, instance_id: int | None) -> str:
    """Keep a signature given as a PNG data URL; returns its id."""
    if not isinstance(data_url, str) or not data_url.startswith(_PREFIX):
        _refuse("invalid")
    if len(data_url) > MAX_BYTES * 4 // 3 + len(_PREFIX) + 4:
        _refuse("maxLength", MAX_BYTES)
    try:
        image = base64.b64decode(data_url[len(_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        _refuse("invalid")
    if not image.startswith(_PNG) or len(image) < 100:
        _refuse("invalid")
    row = Signature(id=str(uuid.uuid4()), user_id=user.id, instance_id=instance_id, image=image,
                    sha256=hashlib.sha256(image).hexdigest())
    session.add(row)
    return row.id


def image(session: Session, signature_id: str) -> bytes:
    """The PNG bytes of a signature (the caller checks the reader may see its instance)."""
    row = session.get(Signature, signature_id)
    if row is None:
        raise NotFound("signature not found")
    return row.image
