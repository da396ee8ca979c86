"""Common opinions (常用意见): the shared ones and each user's own."""
from __future__ import annotations

from flask import g
from flask_smorest import Blueprint

from engine import operations

from ..platform import platform
from .schemas import PhraseOut, PhraseRequest

PREFIX = "/opinions"
blp = Blueprint("api_opinions", __name__, description="Common opinions")


def _out(row, user) -> dict:
    return {"id": row.id, "text": row.text, "own": row.user_id == user.id}


@blp.route("", methods=["GET"])
@blp.response(200, PhraseOut(many=True))
def list_phrases():
    """The shared common opinions, then the caller's own."""
    with platform().db.session() as s:
        return [_out(p, g.user) for p in operations.phrases(s, g.user)]


@blp.route("", methods=["POST"])
@blp.arguments(PhraseRequest())
@blp.response(201, PhraseOut)
def add_phrase(body):
    """Save a common opinion of your own (at most 50)."""
    with platform().db.transaction() as s:
        return _out(operations.add_phrase(s, g.user, body["text"]), g.user)


@blp.route("/<int:phrase_id>", methods=["DELETE"])
@blp.response(204)
def delete_phrase(phrase_id: int):
    """Delete one of your own common opinions."""
    with platform().db.transaction() as s:
        operations.delete_phrase(s, g.user, phrase_id)
