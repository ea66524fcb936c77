"""GET /api/providers/{id}/quality/: a vendor's lead quality from the dbt marts - per project,
per project x geo, per weekly load cohort, and (administrators only) over every live project.

Providers are reference data every user may read; the figures are not: a manager gets only the
rows of their own projects, never the all-projects row (it would reveal other projects). Until
the first dbt run builds the marts the answer is `computed: false` with empty lists."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

from api.deps import CurrentUser, SessionDep, UserDep
from api.errors import not_found
from api.routers.imports import ANALYTICS, mart_exists
from api.schemas.common import IdPath, IdQuery
from api.schemas.imports import CohortRow, GeoRow, ProviderQuality, ProviderRow
from api.scope import get_project_or_404, visible_project_ids
from api.strict_query import StrictQuery
from models.tables import Provider

router = APIRouter(prefix="/api/providers", tags=["lead quality"], dependencies=[StrictQuery])

PROVIDER_MART = f"{ANALYTICS}.fct_lead_quality_provider"
GEO_MART = f"{ANALYTICS}.fct_lead_quality_provider_geo"
COHORT_MART = f"{ANALYTICS}.fct_lead_quality_cohort"
# Rows per list: cohorts are weeks x projects; a year of weekly cohorts of 20 projects fits.
MAX_ROWS = 1000


@router.get(
    "/{provider_id}/quality/",
    response_model=ProviderQuality,
    summary="A provider's lead quality: per project, geo and weekly cohort",
)
def provider_quality(
    provider_id: IdPath, session: SessionDep, user: UserDep, project_id: IdQuery = None
) -> dict[str, Any]:
    if session.get(Provider, provider_id) is None:
        raise not_found("Provider not found.")
    projects: list[int] | None = None  # None: every live project (an administrator)
    if project_id is not None:
        get_project_or_404(session, user, project_id)
        projects = [project_id]
    elif not user.is_admin:
        projects = list(session.scalars(visible_project_ids(user)).all())
    out: dict[str, Any] = {
        "provider_id": provider_id, "computed": False, "overall": None,
        "by_project": [], "by_geo": [], "cohorts": [],
    }  # fmt: skip
    if not all(mart_exists(session, m) for m in (PROVIDER_MART, GEO_MART, COHORT_MART)):
        return out
    out["computed"] = True
    out["by_project"] = [
        ProviderRow.model_validate(r)
        for r in _rows(session, PROVIDER_MART, provider_id, projects, "project_id")
    ]
    out["by_geo"] = [
        GeoRow.model_validate(r)
        for r in _rows(session, GEO_MART, provider_id, projects, "project_id, geo_id NULLS LAST")
    ]
    out["cohorts"] = [
        CohortRow.model_validate(r)
        for r in _rows(session, COHORT_MART, provider_id, projects, "cohort_week DESC, project_id")
    ]
    if _may_see_overall(user, project_id):
        row = session.execute(
            text(f"SELECT * FROM {PROVIDER_MART} WHERE all_projects AND provider_id = :p"),
            {"p": provider_id},
        ).mappings().first()  # fmt: skip
        out["overall"] = ProviderRow.model_validate(dict(row)) if row else None
    return out


def _may_see_overall(user: CurrentUser, project_id: int | None) -> bool:
    # The all-projects row sums projects a manager does not belong to.
    return user.is_admin and project_id is None


def _rows(
    session: Session, mart: str, provider_id: int, projects: list[int] | None, order: str
) -> list[dict[str, Any]]:
    # Deleted projects stay in a mart until the next dbt run: the scope drops them here.
    where = "SELECT id FROM projects WHERE NOT is_deleted"
    params: dict[str, Any] = {"p": provider_id}
    if projects is not None:
        if not projects:
            return []
        where += " AND id IN :projects"
        params["projects"] = projects
    stmt = text(
        f"SELECT * FROM {mart} WHERE NOT all_projects AND provider_id = :p "
        f"AND project_id IN ({where}) ORDER BY {order} LIMIT {MAX_ROWS}"
    )
    if projects is not None:
        stmt = stmt.bindparams(bindparam("projects", expanding=True))
    return [dict(r) for r in session.execute(stmt, params).mappings()]
