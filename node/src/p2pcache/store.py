"""SQLite (WAL) store of cached entries, bounded by bytes with least-recently-used eviction.

Two connections. Reads use their own, and are cheap enough to run on the event loop: in WAL
mode a reader never waits for the writer, and a hit writes nothing (recency is noted in
memory and written with the next put, or by flush_touches). Writes use the other, behind a
lock, and the node runs them in a thread. WAL with synchronous=NORMAL keeps every committed
entry across `kill -9` (only an OS crash may lose the last few).

A store SQLite calls corrupt is moved aside and started afresh. One that cannot be opened
for any other reason (disk full, I/O error, read-only) is left alone: the node runs
uncached and tries again every REOPEN_INTERVAL seconds (on the next write or recency flush).
"""

from __future__ import annotations

import json
import os
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterable

from . import headers as fields
from .models import Entry

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key         TEXT PRIMARY KEY,
    path        TEXT NOT NULL,
    status      INTEGER NOT NULL,
    headers     TEXT NOT NULL,
    body        BLOB NOT NULL,
    fetched_at  REAL NOT NULL,
    size        INTEGER NOT NULL,
    accessed_at REAL NOT NULL,
    vouched     REAL,
    asked_at    REAL
);
CREATE INDEX IF NOT EXISTS entries_path ON entries(path);
CREATE INDEX IF NOT EXISTS entries_lru ON entries(accessed_at);
"""
# Columns added since the first schema, each with what an older store's rows read as: no
# Date known (vouched NULL: revalidated under any --not-before), asked for before this
# process (asked_at NULL: revalidated once, like everything from before a start).
ADDED_COLUMNS = (("vouched", "REAL"), ("asked_at", "REAL"))
# Drops compare paths without regard to case, as GitHub does owner and repository names.
INDEXES = "CREATE INDEX IF NOT EXISTS entries_path_nocase ON entries(path COLLATE NOCASE);"
_COLUMNS = "key, path, status, headers, body, fetched_at, vouched, asked_at"


# Recency is written back at most once a minute per entry: SQLite rewrites a whole row to
# change one column of it, so touching a 700 KB list page on every hit rewrote 700 KB into
# the WAL each time (a job's 100 hits: its whole hot set, every flush). LRU needs no finer.
TOUCH_EVERY = 60.0
REOPEN_INTERVAL = 10.0  # seconds between attempts to open a store that could not be opened
# Only these mean the file itself is bad; anything else (full, I/O, read-only, locked) may
# pass, and the file must be kept.
CORRUPT = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


class StoreError(Exception):
    """The store could not write (disk full, read-only, I/O error); the node serves on."""


def _entry(row: tuple) -> Entry:
    # Entries written by an older node may hold fields that cannot be sent: the store is
    # where those bytes enter, so they are dropped here.
    return Entry(row[0], row[1], row[2], fields.clean(json.loads(row[3]).items()),
                 bytes(row[4]), row[5], vouched=row[6], asked_at=row[7] or 0.0)


def is_corrupt(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in CORRUPT  # extended codes keep the primary low


class Store:
    def __init__(self, path: Path, max_bytes: int = 512 * 1024 * 1024) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()  # the writer connection
        self._read_lock = threading.Lock()
        self._touch_lock = threading.Lock()
        self._touched: dict[str, float] = {}
        self._db: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._bytes = self._count = 0
        self._unavailable: str | None = None  # why the store is not open, while it is not
        self._retry_at = 0.0
        with self._lock:
            self._reopen()

    @property
    def available(self) -> bool:
        return self._db is not None

    def _reopen(self) -> bool:
        """Open the store (under the writer lock); False if it cannot be, for now."""
        db = reader = None
        try:
            db = self._open(self.path)
            totals = db.execute("SELECT COALESCE(SUM(size), 0), COUNT(*) FROM entries").fetchone()
            reader = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            reader.execute("PRAGMA query_only=1")
        except (sqlite3.Error, OSError) as exc:
            for conn in (reader, db):
                if conn is not None:
                    conn.close()
            self._retry_at = time.monotonic() + REOPEN_INTERVAL
            if self._unavailable is None:
                log.warning("⚠️  Cache store %s cannot be opened (%s): running uncached, "
                            "trying again every %.0f s", self.path, exc, REOPEN_INTERVAL)
            self._unavailable = str(exc)
            return False
        with self._read_lock:
            self._db, self._reader = db, reader
        self._bytes, self._count = totals
        if self._unavailable is not None:
            log.info("✓ Cache store open again (%d entries)", self._count)
            self._unavailable = None
        return True

    def _writer(self) -> sqlite3.Connection:
        """The writer connection (under the writer lock), reopening the store when due."""
        if self._db is None and not (time.monotonic() >= self._retry_at and self._reopen()):
            raise StoreError(f"the cache store is not open ({self._unavailable})")
        assert self._db is not None
        return self._db

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        # Entries may hold private-repository data: owner-only, whatever the umask.
        # (SQLite gives its -wal and -shm files the main file's mode.)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=5000")
            # Puts run on the event loop (cheaper than a thread hop each); the checkpoint,
            # which may fsync, is run by flush_touches in a thread instead of by a put.
            db.execute("PRAGMA wal_autocheckpoint=0")
        except sqlite3.Error:
            db.close()
            raise
        return db

    @classmethod
    def _open(cls, path: Path) -> sqlite3.Connection:
        """The writer connection. Raises sqlite3.Error/OSError when the store cannot be
        opened for a reason other than corruption: the caller keeps the file and waits."""
        db = None
        try:
            db = cls._connect(path)
            healthy = db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        except sqlite3.DatabaseError as exc:  # "file is not a database", "malformed" ...
            if db is not None:
                db.close()
            if not is_corrupt(exc):
                raise
            db, healthy = None, False
        if not healthy:
            # A cache is worth less than a node that starts: keep the evidence, begin empty.
            if db is not None:
                db.close()
            broken = path.with_name(path.name + f".corrupt-{int(time.time())}")
            path.rename(broken)
            for suffix in ("-wal", "-shm"):
                path.with_name(path.name + suffix).unlink(missing_ok=True)
            log.warning("Cache store %s failed its integrity check; moved it to %s and "
                        "started empty", path, broken)
            db = cls._connect(path)
        try:
            db.executescript(SCHEMA)
            have = {row[1] for row in db.execute("PRAGMA table_info(entries)")}
            for name, kind in ADDED_COLUMNS:
                if name not in have:  # a store written by an older node: migrate in place
                    db.execute(f"ALTER TABLE entries ADD COLUMN {name} {kind}")
            db.executescript(INDEXES)
        except sqlite3.Error:
            db.close()
            raise
        return db

    @property
    def bytes(self) -> int:
        return self._bytes

    @property
    def count(self) -> int:
        return self._count

    def get(self, key: str, now: float | None = None) -> Entry | None:
        with self._read_lock:
            if self._reader is None:
                return None  # running uncached
            row = self._reader.execute(
                f"SELECT {_COLUMNS}, accessed_at FROM entries WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        now = time.time() if now is None else now
        if not now - TOUCH_EVERY < (row[8] or 0.0) <= now:
            with self._touch_lock:
                self._touched[key] = now
        return _entry(row)

    def head(self, key: str) -> Entry | None:
        """The entry under `key` with its body left in the file (`body` empty, the stored
        `size` kept apart): enough to rank and to judge freshness, without the memory."""
        with self._read_lock:
            if self._reader is None:
                return None
            row = self._reader.execute(
                "SELECT key, path, status, headers, fetched_at, size, vouched, asked_at "
                "FROM entries WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return Entry(row[0], row[1], row[2], fields.clean(json.loads(row[3]).items()), b"",
                     row[4], stored_size=row[5], vouched=row[6], asked_at=row[7] or 0.0)

    def flush_touches(self) -> None:
        """Write the recency noted by get(), so eviction sees it (the node calls this every
        few seconds, so it is also where a store that could not be opened is retried)."""
        with self._lock:
            try:
                self._writer()
            except StoreError:
                return
            self._flush_touches()
            try:
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error:
                pass  # the next flush tries again; the WAL only grows meanwhile

    def _flush_touches(self) -> None:
        with self._touch_lock:
            touched, self._touched = self._touched, {}
        if not touched or self._db is None:
            return
        try:
            self._db.executemany("UPDATE entries SET accessed_at = ? WHERE key = ?",
                                 [(at, key) for key, at in touched.items()])
        except sqlite3.OperationalError:
            pass  # recency is a hint; a full disk must not turn a hit into an error

    def put(self, entry: Entry, now: float | None = None) -> None:
        self.put_many([entry], now)

    def put_many(self, entries: list[Entry], now: float | None = None) -> None:
        """Store entries in one transaction (a warm start's batch costs one commit)."""
        entries = [e for e in entries if e.size <= self.max_bytes]
        if not entries:
            return
        accessed = time.time() if now is None else now
        with self._lock:
            self._writer()
            self._flush_touches()
            try:
                self._db.execute("BEGIN IMMEDIATE")
                new_bytes, new_count = self._bytes, self._count
                for entry in entries:
                    old = self._db.execute("SELECT size FROM entries WHERE key = ?",
                                           (entry.key,)).fetchone()
                    self._db.execute(
                        "INSERT OR REPLACE INTO entries (key, path, status, headers, body, "
                        "fetched_at, size, accessed_at, vouched, asked_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (entry.key, entry.path, entry.status, json.dumps(entry.headers),
                         entry.body, entry.fetched_at, entry.size, accessed, entry.vouched,
                         accessed if entry.asked_at is None else entry.asked_at))
                    new_bytes += entry.size - (old[0] if old else 0)
                    new_count += 0 if old else 1
                new_bytes, new_count = self._evict(new_bytes, new_count)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                what = repr(entries[0].key) if len(entries) == 1 else f"{len(entries)} entries"
                raise StoreError(f"could not store {what}: {exc}") from exc
            self._bytes, self._count = new_bytes, new_count

    def _evict(self, total: int, count: int) -> tuple[int, int]:
        """Drop least recently used entries until the store fits its byte bound."""
        while total > self.max_bytes:
            victims = self._db.execute(
                "SELECT key, size FROM entries ORDER BY accessed_at LIMIT 64").fetchall()
            if not victims:
                break
            for key, size in victims:
                if total <= self.max_bytes:
                    break
                self._db.execute("DELETE FROM entries WHERE key = ?", (key,))
                total -= size
                count -= 1
        return total, count

    def entries_under(self, path: str, limit: int = 8) -> list[Entry]:
        """The entry at `path` and a few below it whose Link names GitHub's
        `/repositories/<id>` form: what tells a write which aliases it must also drop."""
        like = path.rstrip("/").replace("\\", "\\\\").replace("%", "\\%") \
            .replace("_", "\\_") + "/%"
        with self._read_lock:
            if self._reader is None:
                return []
            rows = self._reader.execute(
                f"SELECT {_COLUMNS} FROM entries "
                "WHERE path = ? OR (path LIKE ? ESCAPE '\\' AND headers LIKE "
                "'%/repositories/%') LIMIT ?", (path, like, limit)).fetchall()
        return [_entry(r) for r in rows]

    def invalidate(self, paths: list[str]) -> int:
        """Delete entries at these paths and below them; returns how many went."""
        return self.drop((), paths)

    def drop(self, paths: Iterable[str], trees: Iterable[str], limit: int | None = None) -> int:
        """Delete the entries at `paths` (exactly, with any query) and at or under `trees`,
        comparing paths without regard to case; at most `limit` of them. Returns how many
        went."""
        removed = 0
        with self._lock:
            self._writer()
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for key, size in self._under(self._db, paths, trees, limit):
                    self._db.execute("DELETE FROM entries WHERE key = ?", (key,))
                    self._bytes -= size
                    self._count -= 1
                    removed += 1
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise StoreError(f"could not drop entries: {exc}") from exc
        return removed

    def count_under(self, paths: Iterable[str], trees: Iterable[str],
                    limit: int | None = None) -> int:
        """How many entries `drop` would delete (at most `limit`), deleting nothing."""
        with self._read_lock:
            if self._reader is None:
                return 0
            try:
                return len(self._under(self._reader, paths, trees, limit))
            except sqlite3.Error as exc:
                raise StoreError(f"could not count entries: {exc}") from exc

    @staticmethod
    def _under(db: sqlite3.Connection, paths: Iterable[str], trees: Iterable[str],
               limit: int | None) -> list[tuple[str, int]]:
        rows: dict[str, int] = {}
        for path in paths:
            rows.update(db.execute("SELECT key, size FROM entries WHERE path = ? COLLATE NOCASE",
                                   (path,)).fetchall())
        for tree in trees:
            tree = tree.rstrip("/")
            # '/' < '0' in ASCII: [tree/, tree0) is everything under the tree.
            rows.update(db.execute(
                "SELECT key, size FROM entries WHERE path = ? COLLATE NOCASE OR "
                "(path >= ? COLLATE NOCASE AND path < ? COLLATE NOCASE)",
                (tree or "/", tree + "/", tree + "0")).fetchall())
        return list(rows.items())[:limit]

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
            # The running totals may have moved before the failure: recount from the truth.
            self._bytes, self._count = self._db.execute(
                "SELECT COALESCE(SUM(size), 0), COUNT(*) FROM entries").fetchone()
        except sqlite3.Error:
            pass

    def close(self) -> None:
        with self._read_lock:
            if self._reader is not None:
                self._reader.close()
        with self._lock:
            if self._db is None:
                return
            self._flush_touches()
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass
            self._db.close()
