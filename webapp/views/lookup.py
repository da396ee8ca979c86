"""Lookups for pickers (JSON, session-authenticated)."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from engine.org import search_users

from ..platform import platform
from ..security import login_required

bp = Blueprint("lookup", __name__, url_prefix="/lookup")


@bp.route("/users")
@login_required
def users():
    q = request.args.get("q", "").strip()[:50]
    with platform().db.session() as s:
        found = search_users(s, q, limit=20)
        return jsonify([{"username": u.username, "name": u.name, "unit": u.unit.name if u.unit else ""}
                        for u in found])
