"""`GET /api/projects/{id}/callable/`: how many of a project's numbers may be called now, by
zone, and when each zone's next window opens (models/dialing/eligibility.py)."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter

from api.deps import SessionDep, SettingsDep, UserDep
from api.schemas.common import IdPath
from api.schemas.dialing import CallableSummary
from api.scope import get_project_or_404
from api.strict_query import StrictQuery
from models.dialing.eligibility import project_summary
from models.dialing.policy import PolicyConfig

router = APIRouter(prefix="/api/projects", tags=["dialing"], dependencies=[StrictQuery])


@router.get(
    "/{project_id}/callable/",
    response_model=CallableSummary,
    summary="Numbers callable now, by time zone, and when the next window opens",
)
def callable_summary(
    project_id: IdPath, session: SessionDep, user: UserDep, settings: SettingsDep
) -> CallableSummary:
    get_project_or_404(session, user, project_id)
    summary = project_summary(
        session, project_id, dt.datetime.now(dt.UTC), PolicyConfig.from_settings(settings)
    )
    return CallableSummary.model_validate(summary, from_attributes=True)
