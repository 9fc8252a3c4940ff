"""The realistic data set: a meeting-notes application like the spec's.

Organizations, users, meetings (jsonb metadata), participants, transcripts
(long natural-language text, most of the bytes, stored TOASTed and
pglz-compressed as PostgreSQL does by default) and summaries (text plus
jsonb action items); uuid keys, timestamps, secondary and GIN indexes,
foreign keys. The rows are generated in Python from one seed and streamed
with COPY in batches; indexes and constraints come after the load, as a
restore would build them.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from bench.vocab import TextGenerator

SCHEMA = """
CREATE TABLE organizations (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    slug        text NOT NULL UNIQUE,
    plan        text NOT NULL,
    settings    jsonb NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE TABLE users (
    id               uuid PRIMARY KEY,
    organization_id  uuid NOT NULL,
    email            text NOT NULL,
    display_name     text NOT NULL,
    role             text NOT NULL,
    timezone         text NOT NULL,
    preferences      jsonb NOT NULL,
    last_login_at    timestamptz,
    created_at       timestamptz NOT NULL
);
CREATE TABLE meetings (
    id               uuid PRIMARY KEY,
    organization_id  uuid NOT NULL,
    host_id          uuid NOT NULL,
    title            text NOT NULL,
    platform         text NOT NULL,
    status           text NOT NULL,
    starts_at        timestamptz NOT NULL,
    ends_at          timestamptz NOT NULL,
    metadata         jsonb NOT NULL,
    created_at       timestamptz NOT NULL
);
CREATE TABLE meeting_participants (
    meeting_id  uuid NOT NULL,
    user_id     uuid NOT NULL,
    role        text NOT NULL,
    joined_at   timestamptz NOT NULL,
    left_at     timestamptz NOT NULL
);
CREATE TABLE transcripts (
    id          uuid PRIMARY KEY,
    meeting_id  uuid NOT NULL,
    language    text NOT NULL,
    content     text NOT NULL,
    word_count  integer NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE TABLE summaries (
    id             uuid PRIMARY KEY,
    meeting_id     uuid NOT NULL,
    transcript_id  uuid NOT NULL,
    kind           text NOT NULL,
    body           text NOT NULL,
    action_items   jsonb NOT NULL,
    model          text NOT NULL,
    created_at     timestamptz NOT NULL
);
"""

CONSTRAINTS = """
ALTER TABLE meeting_participants ADD PRIMARY KEY (meeting_id, user_id);
CREATE UNIQUE INDEX users_email_key ON users (email);
CREATE INDEX users_organization_id_idx ON users (organization_id);
CREATE INDEX meetings_org_starts_idx ON meetings (organization_id, starts_at);
CREATE INDEX meetings_host_id_idx ON meetings (host_id);
CREATE INDEX meetings_metadata_idx ON meetings USING gin (metadata jsonb_path_ops);
CREATE INDEX meeting_participants_user_idx ON meeting_participants (user_id);
CREATE UNIQUE INDEX transcripts_meeting_id_key ON transcripts (meeting_id);
CREATE INDEX summaries_meeting_id_idx ON summaries (meeting_id);
CREATE INDEX summaries_created_at_idx ON summaries (created_at);
ALTER TABLE users ADD FOREIGN KEY (organization_id) REFERENCES organizations (id);
ALTER TABLE meetings ADD FOREIGN KEY (organization_id) REFERENCES organizations (id);
ALTER TABLE meetings ADD FOREIGN KEY (host_id) REFERENCES users (id);
ALTER TABLE meeting_participants ADD FOREIGN KEY (meeting_id) REFERENCES meetings (id);
ALTER TABLE meeting_participants ADD FOREIGN KEY (user_id) REFERENCES users (id);
ALTER TABLE transcripts ADD FOREIGN KEY (meeting_id) REFERENCES meetings (id);
ALTER TABLE summaries ADD FOREIGN KEY (meeting_id) REFERENCES meetings (id);
ALTER TABLE summaries ADD FOREIGN KEY (transcript_id) REFERENCES transcripts (id);
"""

EPOCH = datetime(2023, 1, 1, tzinfo=UTC)
SPAN_S = 2 * 365 * 86400
EST_BYTES_PER_MEETING = 30_000  # sizes the user base before the meetings are generated
BATCH_BYTES = 8 << 20
PLATFORMS = ["zoom", "meet", "teams", "webex"]
MODELS = ["summarizer-large-2024-06", "summarizer-small-2024-09", "summarizer-large-2025-01"]
TIMEZONES = ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC", "America/Sao_Paulo"]


@dataclass
class _User:
    id: uuid.UUID
    email: str
    name: str


@dataclass
class _Rows:
    """One batch of rows per table, and roughly how many bytes they hold as text."""

    tables: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    nbytes: int = 0

    def add(self, table: str, row: tuple[Any, ...]) -> None:
        self.tables.setdefault(table, []).append(row)
        self.nbytes += sum(len(v) if isinstance(v, str) else 16 for v in row)


class _Generator:
    def __init__(self, seed: int, target_bytes: int) -> None:
        self.text = TextGenerator(seed)
        self.rng: random.Random = self.text.rng
        self.target = target_bytes
        meetings_est = max(20, target_bytes // EST_BYTES_PER_MEETING)
        self.n_users = max(12, meetings_est // 6)
        self.n_orgs = max(2, self.n_users // 60)
        self.orgs: list[uuid.UUID] = []
        self.members: dict[uuid.UUID, list[_User]] = {}
        self.generated = 0
        self.counts: dict[str, int] = {}

    def uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def when(self, after: datetime = EPOCH, span_s: int = SPAN_S) -> datetime:
        return after + timedelta(seconds=self.rng.randrange(span_s))

    def directory(self) -> _Rows:
        rows = _Rows()
        for i in range(self.n_orgs):
            org = self.uuid()
            name = self.text.name()
            slug = f"{name.lower().replace(' ', '-')}-{i}"
            settings = {
                "retention_days": self.rng.choice([30, 90, 365]),
                "sso": {"enabled": self.rng.random() < 0.4, "provider": "saml"},
                "features": self.text.draw(3),
            }
            rows.add(
                "organizations",
                (org, name, slug, self.rng.choice(["free", "team", "business"]), json.dumps(settings), self.when()),
            )
            self.orgs.append(org)
            self.members[org] = []
        for i in range(self.n_users):
            org = self.orgs[i % self.n_orgs]
            name = self.text.name()
            user = _User(self.uuid(), f"{name.lower().replace(' ', '.')}.{i}@example.com", name)
            prefs = {
                "locale": "en",
                "notifications": {"email": self.rng.random() < 0.7},
                "theme": self.rng.choice(["light", "dark", "system"]),
            }
            created = self.when()
            rows.add(
                "users",
                (
                    user.id,
                    org,
                    user.email,
                    name,
                    self.rng.choice(["owner", "admin", "member", "member", "member"]),
                    self.rng.choice(TIMEZONES),
                    json.dumps(prefs),
                    self.when(created, 86400 * 30),
                    created,
                ),
            )
            self.members[org].append(user)
        return rows

    def meeting(self, rows: _Rows) -> None:
        rng = self.rng
        org = self.orgs[rng.randrange(self.n_orgs)]
        people = self.members[org]
        attendees = rng.sample(people, min(len(people), rng.randint(2, 8)))
        host = attendees[0]
        meeting_id = self.uuid()
        starts = self.when()
        n_words = int(min(20000, max(150, rng.lognormvariate(8.0, 0.6))))
        duration = timedelta(seconds=n_words // 2 + rng.randint(60, 900))
        platform = rng.choice(PLATFORMS)
        metadata = {
            "platform": platform,
            "recording": {
                "id": f"{rng.getrandbits(64):016x}",
                "duration_s": duration.seconds,
                "url": f"https://recordings.example.com/{org}/{meeting_id}.mp4",
            },
            "calendar": {"event_id": f"{rng.getrandbits(96):024x}", "recurring": rng.random() < 0.5},
            "tags": self.text.draw(rng.randint(0, 4)),
            "bot": {"version": f"1.{rng.randint(0, 9)}.{rng.randint(0, 20)}"},
        }
        title = self.text.sentence(rng.randint(3, 8))[:-1]
        rows.add(
            "meetings",
            (
                meeting_id,
                org,
                host.id,
                title,
                platform,
                "completed",
                starts,
                starts + duration,
                json.dumps(metadata),
                starts,
            ),
        )
        for i, person in enumerate(attendees):
            joined = starts + timedelta(seconds=rng.randint(0, 120))
            rows.add(
                "meeting_participants",
                (meeting_id, person.id, "host" if i == 0 else "guest", joined, starts + duration),
            )
        transcript_id = self.uuid()
        content = self.text.transcript(n_words, [p.name for p in attendees])
        done = starts + duration + timedelta(minutes=rng.randint(1, 30))
        rows.add("transcripts", (transcript_id, meeting_id, "en", content, n_words, done))
        for kind in ("brief", "detailed") if rng.random() < 0.6 else ("brief",):
            n = rng.randint(60, 150) if kind == "brief" else rng.randint(250, 700)
            items = [
                {
                    "owner": rng.choice(attendees).email,
                    "text": self.text.sentence(rng.randint(5, 14)),
                    "due": (done + timedelta(days=rng.randint(1, 21))).date().isoformat(),
                    "done": rng.random() < 0.3,
                }
                for _ in range(rng.randint(0, 6))
            ]
            rows.add(
                "summaries",
                (
                    self.uuid(),
                    meeting_id,
                    transcript_id,
                    kind,
                    self.text.paragraph(n),
                    json.dumps(items),
                    rng.choice(MODELS),
                    done,
                ),
            )

    def batches(self) -> Iterator[_Rows]:
        first = self.directory()
        self.generated += first.nbytes
        yield first
        while self.generated < self.target:
            rows = _Rows()
            while rows.nbytes < BATCH_BYTES and self.generated + rows.nbytes < self.target:
                self.meeting(rows)
            self.generated += rows.nbytes
            yield rows


def load_realistic(conninfo: str, target_mb: float, seed: int) -> dict[str, int]:
    """Create and fill the schema in an empty database; return rows per table."""
    generator = _Generator(seed, int(target_mb * 1_000_000))
    counts: dict[str, int] = {}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(SCHEMA)
        for rows in generator.batches():
            with conn.transaction(), conn.cursor() as cur:
                for table, table_rows in rows.tables.items():
                    with cur.copy(f"COPY {table} FROM STDIN") as copy:
                        for row in table_rows:
                            copy.write_row(row)
                    counts[table] = counts.get(table, 0) + len(table_rows)
        conn.execute(CONSTRAINTS)
    return counts
