"""SQL over an index: DuckDB reading the snapshot's Lance tables as Arrow datasets.

Every table is a view of its name (`videos`, `clips`, `masklets`, `concept_hits`, `tracks`,
`runs`, `concepts`). The per-video tables show committed rows only: those whose video has an
`indexed` row in `videos` (the commit marker), as every other query does. DuckDB scans the
Lance datasets through their Arrow dataset interface (projection and filters pushed down), in
an in-memory database of its own; extension auto-install and auto-load are off, so nothing is
downloaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

from vidlake.errors import UsageError, one_line
from vidlake.store.schema import STATUS_INDEXED, TABLES
from vidlake.store.tables import VIDEO_ROW_TABLES

if TYPE_CHECKING:
    from vidlake.query.engine import ConceptIndex


def connect(engine: ConceptIndex):
    """A DuckDB connection with a view per table of ENGINE's snapshot (committed rows)."""
    import duckdb

    con = duckdb.connect(":memory:")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    for name in TABLES:
        ds = engine.dataset(name)
        source = TABLES[name].empty_table() if ds is None else ds
        con.register(f"_lance_{name}", source)
        if name in VIDEO_ROW_TABLES:
            # Committed rows: of indexed videos, less a concept still pending on its video
            # (being added or pruned; an index from before that column has none pending).
            pending = ""
            videos = engine.dataset("videos")
            has_pending = videos is not None and "pending_concepts" in videos.schema.names
            if has_pending and "concept" in TABLES[name].names:
                pending = (
                    " AND NOT list_contains(coalesce(v.pending_concepts, []::VARCHAR[]), t.concept)"
                )
            con.execute(
                f"CREATE VIEW {name} AS SELECT * FROM _lance_{name} t WHERE EXISTS (SELECT 1 "
                f"FROM _lance_videos v WHERE v.video_id = t.video_id AND v.status = "
                f"'{STATUS_INDEXED}'{pending})"
            )
        else:
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM _lance_{name}")
    return con


def run_sql(engine: ConceptIndex, statement: str) -> pa.Table:
    """STATEMENT's result as an Arrow table; a UsageError with DuckDB's message if it fails."""
    import duckdb

    if not isinstance(statement, str) or not statement.strip():
        raise UsageError("the SQL statement is empty")
    con = connect(engine)
    try:
        result = con.execute(statement)
        if result.description is None:  # a statement without rows (SET, CREATE VIEW ...)
            return pa.table({})
        return result.to_arrow_table()
    except duckdb.Error as exc:
        raise UsageError(f"sql: {one_line(exc)}") from None
    finally:
        con.close()
