"""Test data factory: committed rows with sensible, unique defaults."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from sqlalchemy.orm import Session

from models.tables import (
    Geo,
    PhoneNumber,
    Project,
    ProjectMember,
    ProjectProvider,
    ProjectSchedule,
    Provider,
    User,
)

_seq = itertools.count(1)


class Factory:
    def __init__(self, session: Session) -> None:
        self.session = session

    def _save(self, obj: Any) -> Any:
        self.session.add(obj)
        self.session.commit()
        return obj

    def user(self, *, role: str = "manager", password: str = "s3cret-pass!", **kw: Any) -> User:
        from pwdlib import PasswordHash

        n = next(_seq)
        kw.setdefault("username", f"user{n}")
        kw.setdefault("email", f"user{n}@example.com")
        kw.setdefault("password_hash", PasswordHash.recommended().hash(password))
        return self._save(User(role=role, **kw))

    def project(self, *, members: list[User] | None = None, **kw: Any) -> Project:
        n = next(_seq)
        kw.setdefault("code", f"proj{n}")
        kw.setdefault("name", f"Project {n}")
        project = self._save(Project(**kw))
        for user in members or []:
            self._save(ProjectMember(project_id=project.id, user_id=user.id))
        return project

    def provider(self, *, projects: list[Project] | None = None, **kw: Any) -> Provider:
        n = next(_seq)
        kw.setdefault("code", f"prov{n}")
        kw.setdefault("name", f"Provider {n}")
        provider = self._save(Provider(**kw))
        for project in projects or []:
            self._save(ProjectProvider(project_id=project.id, provider_id=provider.id))
        return provider

    def geo(self, **kw: Any) -> Geo:
        kw.setdefault("country_code", "RU")
        kw.setdefault("region", "Moscow")
        kw.setdefault("city", "Moscow")
        kw.setdefault("timezone", "Europe/Moscow")
        return self._save(Geo(**kw))

    def number(self, project: Project, phone: str | None = None, **kw: Any) -> PhoneNumber:
        n = next(_seq)
        phone = phone or f"+7916{n:07d}"
        return self._save(PhoneNumber(project_id=project.id, phone_number=phone, **kw))

    def schedule(
        self, project: Project, weekday: int = 0, start: str = "09:00", end: str = "18:00"
    ) -> ProjectSchedule:
        return self._save(
            ProjectSchedule(
                project_id=project.id,
                weekday=weekday,
                start_time=dt.time.fromisoformat(start),
                end_time=dt.time.fromisoformat(end),
            )
        )
