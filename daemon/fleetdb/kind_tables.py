"""The tables of a device kind, as the migration that creates them (fleetdb.kinds).

`python -m fleetdb.kind_tables NAME` prints it for a kind of the registry: save it as the next
numbered file in sql/ (it is then frozen like every migration). The partition functions
(sql/functions/) create and drop the kind's daily partitions from then on, since the migration
adds the kind to fleet_kinds. The built-in kinds' tables were written by hand (001-011, with
the same shapes); their migrations stay as they are.
"""

from __future__ import annotations

import sys

from fleetdb.kinds import REGISTRY, DeviceKind, by_name
from fleetdb.rollups import LEVELS, value_columns


def _rollup_types(kind: DeviceKind) -> dict[str, str]:
    """The SQL type of each rollup column (fleetdb.rollups.value_columns)."""
    types = {"kwh_sum": "numeric", "readings": "integer"}
    if (s := kind.spread) is not None:
        p = s.prefix
        types |= {f"{p}_sum": "double precision", f"{p}_min": "real", f"{p}_max": "real"}
    if (e := kind.edges) is not None:
        p = e.prefix
        types |= {f"{p}_first": "real", f"{p}_last": "real"}
        types |= {f"{p}_first_ts": "timestamptz", f"{p}_last_ts": "timestamptz"}
    return types


def _values(kind: DeviceKind) -> str:
    return "".join(f",\n    {c.name} {c.sql_type} NOT NULL" for c in kind.columns)


def create_tables_sql(kind: DeviceKind) -> str:
    """Every table of `kind`, its grants, and its row in fleet_kinds (idempotent)."""
    dev = f'{kind.device} text COLLATE "C" NOT NULL'
    out = [
        f"-- Tables of the device kind {kind.name!r} (fleetdb.kinds; fleetdb.kind_tables).",
        f"""CREATE TABLE IF NOT EXISTS {kind.history} (
    ts timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    {dev}{_values(kind)},
    PRIMARY KEY ({kind.device}, ts)
) PARTITION BY RANGE (ts);""",
        f"""CREATE INDEX IF NOT EXISTS {kind.history}_ts_brin ON {kind.history}
    USING brin (ts) WITH (pages_per_range = 16, autosummarize = on);""",
        f"""CREATE TABLE IF NOT EXISTS {kind.current} (
    {kind.device} text COLLATE "C" PRIMARY KEY,
    ts timestamptz NOT NULL,
    updated_at timestamptz NOT NULL{_values(kind)}
) WITH (fillfactor = 50, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
        autovacuum_vacuum_cost_delay = 0);""",
        f"""CREATE TABLE IF NOT EXISTS {kind.late} (
    ts timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    {dev}{_values(kind)},
    PRIMARY KEY ({kind.device}, ts)
);
CREATE INDEX IF NOT EXISTS {kind.late}_ts ON {kind.late} (ts);""",
    ]
    for level in LEVELS:
        table = level.table(kind)
        types = _rollup_types(kind)
        cols = "".join(f",\n    {c} {types[c]} NOT NULL" for c in value_columns(kind))
        out.append(f"""CREATE TABLE IF NOT EXISTS {table} (
    {level.column} timestamptz NOT NULL,
    {dev}{cols},
    PRIMARY KEY ({kind.device}, {level.column})
) PARTITION BY RANGE ({level.column});
CREATE INDEX IF NOT EXISTS {table}_{level.column}_brin ON {table}
    USING brin ({level.column}) WITH (pages_per_range = 8, autosummarize = on);""")
    out.append(f"""CREATE TABLE IF NOT EXISTS {kind.cold} (
    day date NOT NULL,
    hour smallint NOT NULL,
    grp smallint NOT NULL,
    readings integer NOT NULL,
    body bytea NOT NULL,
    PRIMARY KEY (day, hour, grp)
) PARTITION BY RANGE (day);
ALTER TABLE {kind.cold} ALTER COLUMN body SET STORAGE EXTERNAL;
CREATE TABLE IF NOT EXISTS {kind.hours} (
    day date NOT NULL,
    grp smallint NOT NULL,
    readings integer NOT NULL,
    body bytea NOT NULL,
    PRIMARY KEY (day, grp)
) PARTITION BY RANGE (day);
ALTER TABLE {kind.hours} ALTER COLUMN body SET STORAGE EXTERNAL;""")
    rollups = ", ".join(kind.rollups)
    every = ", ".join((kind.history, kind.current, kind.late, *kind.rollups, kind.cold, kind.hours))
    out.append(f"""GRANT SELECT, INSERT ON {kind.history} TO fleet_ingest;
GRANT SELECT, INSERT, UPDATE ON {kind.current}, {rollups}, {kind.cold}, {kind.hours}
    TO fleet_ingest;
GRANT SELECT, INSERT, DELETE ON {kind.late} TO fleet_ingest;
GRANT SELECT ON {every} TO fleet_analytics;
INSERT INTO fleet_kinds (name) VALUES ('{kind.name}') ON CONFLICT DO NOTHING;""")
    return "\n\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print the migration of the registry's kind named on the command line."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m fleetdb.kind_tables KIND", file=sys.stderr)
        return 2
    try:
        kind = by_name(args[0], REGISTRY)
    except KeyError:
        print(f"no kind {args[0]!r} in fleetdb.kinds.REGISTRY", file=sys.stderr)
        return 2
    sys.stdout.write(create_tables_sql(kind))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
