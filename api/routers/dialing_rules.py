"""`/api/projects/{id}/dialing-rules/` GET/PUT/PATCH: a project's dial-queue rules
(models/dialing/queue_rules.py, docs/dial-queue.md). Managers: their projects (others 404);
every change is audited (`project_dialing_rules`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy.orm import Session

from api import audit
from api.deps import ClientDep, CurrentUser, SessionDep, UserDep
from api.queue_plans import DropPlansAfterWrite
from api.schemas.common import IdPath
from api.schemas.dial_queue import DialingRulesOut, DialingRulesPatch, DialingRulesPut
from api.scope import get_project_or_404
from api.strict_query import StrictQuery
from models.dialing import queue_rules
from models.dialing.queue_rules import OutcomeRule, Rules
from models.tables import ProjectDialingRules

router = APIRouter(
    prefix="/api/projects", tags=["dial queue"], dependencies=[StrictQuery, DropPlansAfterWrite]
)


def _rules_out(project_id: int, rules: Rules) -> DialingRulesOut:
    return DialingRulesOut(
        project_id=project_id,
        max_attempts=rules.max_attempts,
        min_gap_seconds=rules.min_gap_seconds,
        hand_out_order=rules.hand_out_order,  # type: ignore[arg-type]
        outcomes=rules.outcomes_json(),  # type: ignore[arg-type]
        is_default=not rules.stored,
    )


def _as_dict(rules: Rules) -> dict[str, Any]:
    return {
        "max_attempts": rules.max_attempts,
        "min_gap_seconds": rules.min_gap_seconds,
        "hand_out_order": rules.hand_out_order,
        "outcomes": rules.outcomes_json(),
    }


@router.get(
    "/{project_id}/dialing-rules/",
    response_model=DialingRulesOut,
    summary="The project's dial-queue rules (defaults when none are set)",
)
def get_rules(project_id: IdPath, session: SessionDep, user: UserDep) -> DialingRulesOut:
    get_project_or_404(session, user, project_id)
    return _rules_out(project_id, queue_rules.load(session, project_id))


def _save(
    session: Session,
    user: CurrentUser,
    client: Any,
    project_id: int,
    new: dict[str, Any],
) -> DialingRulesOut:
    get_project_or_404(session, user, project_id)
    row = session.get(ProjectDialingRules, project_id, with_for_update=True)
    before = _as_dict(queue_rules.from_row(row))
    created = row is None
    if row is None:
        row = ProjectDialingRules(project_id=project_id, **new, updated_by=user.id)
        session.add(row)
    else:
        for key, value in new.items():
            setattr(row, key, value)
        row.updated_by = user.id
    changes = audit.diff(before, new)
    if changes or created:  # the first save is recorded even when it restates the defaults
        session.flush()
        audit.record(
            session,
            action="create" if created else "update",
            user=user,
            entity_type="project_dialing_rules",
            entity_id=project_id,
            changes=changes,
            client=client,
        )
    session.commit()
    return _rules_out(project_id, queue_rules.load(session, project_id))


@router.put(
    "/{project_id}/dialing-rules/",
    response_model=DialingRulesOut,
    summary="Replace the project's dial-queue rules (outcomes left out take their defaults)",
)
def put_rules(
    project_id: IdPath,
    body: DialingRulesPut,
    session: SessionDep,
    user: UserDep,
    client: ClientDep,
) -> DialingRulesOut:
    outcomes = dict(queue_rules.DEFAULT_OUTCOMES)
    for key, value in body.outcomes.items():
        outcomes[key] = OutcomeRule(value.final, value.retry_seconds)
    new = {
        "max_attempts": body.max_attempts,
        "min_gap_seconds": body.min_gap_seconds,
        "hand_out_order": body.hand_out_order,
        "outcomes": {k: v.as_json() for k, v in outcomes.items()},
    }
    return _save(session, user, client, project_id, new)


@router.patch(
    "/{project_id}/dialing-rules/",
    response_model=DialingRulesOut,
    summary="Change some of the project's dial-queue rules",
)
def patch_rules(
    project_id: IdPath,
    body: DialingRulesPatch,
    session: SessionDep,
    user: UserDep,
    client: ClientDep,
) -> DialingRulesOut:
    get_project_or_404(session, user, project_id)
    current = _as_dict(queue_rules.load(session, project_id))
    sent = body.model_fields_set
    for field in ("max_attempts", "min_gap_seconds", "hand_out_order"):
        value = getattr(body, field)
        if field in sent and value is not None:
            current[field] = value
    for key, patch in (body.outcomes or {}).items():
        rule = current["outcomes"][key]
        if patch.final is not None:
            rule["final"] = patch.final
        if patch.retry_seconds is not None:
            rule["retry_seconds"] = patch.retry_seconds
    return _save(session, user, client, project_id, current)
