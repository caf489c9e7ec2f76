// Package tombstone owns the database side of tombstone: the schema that
// keeps deleted rows, the catalog of protected tables the rewriter plans
// with, and the operations on batches (show, undelete, purge, hold).
//
// # Layers
//
// Most of the logic is SQL, embedded from sql/ and installed by Install,
// so that the proxy console, the CLI and a DBA in psql all run the same
// code with their own privileges and inside their own transactions:
//
//   - sql/NNN_*.sql are the versioned migrations (tables: schema_version,
//     batches, shadows, shadow_columns, settings, protected, trash). They
//     run in order, in one transaction, under pg_advisory_xact_lock, so
//     proxies starting together do not race and re-running is a no-op.
//   - sql/functions_*.sql hold the functions and their grants, one file
//     per subject (types, catalog, shadow, batches, privileges, capture,
//     console, guards, reaper, restore, trash), applied in the order of
//     functionFiles; Install re-applies them whenever their text
//     changes. Each function pins its own search_path in its CREATE
//     FUNCTION; functions_check.sql, applied last, fails the install if
//     one does not.
//   - The Go API (Install, Sync, EnsureShadow, LoadCatalog, ShowBatches,
//     UndeleteBatch, …) is a thin, typed layer over those functions.
//
// # Storage
//
// Each protected table has a typed shadow table tombstone.<schema>__<table>
// (cut to 63 bytes with a hash suffix when needed): the source's columns,
// all nullable and without constraints, plus _ts_batch, _ts_cause
// ('delete', 'cascade', 'set_null', 'truncate') and _ts_deleted_at. The rewritten
// DELETE (package rewrite) writes the batch row in the same statement as
// the delete; the table's capture triggers (sql/functions_capture.sql,
// SECURITY DEFINER) write the shadow rows from the statement's transition
// table, into that batch. No application role may write a shadow table. Shadow columns are tracked by the source
// column's attnum (tombstone.shadow_columns), so that tombstone.sync_shadow
// follows ALTER TABLE without losing tombstones: added columns are added,
// renamed ones renamed, dropped ones kept, and retyped ones retyped in
// place only when every stored value survives the round trip (otherwise
// the old column is set aside as <col>__old_N). A column added after a
// tombstone was written restores as its default. With a superuser,
// Install adds a ddl_command_end event trigger that syncs in the DDL's
// own transaction and NOTIFYs NotifyChannel; without one, Sync (which
// the proxy runs before use) does the same work.
//
// # Catalog and its guard
//
// LoadCatalog reads the protected tables (tombstone.protected_tables():
// the protected schemas' tables minus exclusions, partitions resolved to
// their root) with their columns, retention, shadow names and the foreign
// keys that reference them. Each table carries a signature computed by
// tombstone.catalog_signature: an md5 over the live columns of the table
// and of everything its deletes cascade to, the referencing CASCADE /
// SET NULL / SET DEFAULT constraints, and the protection rules'
// generation. Every rewritten DELETE calls tombstone.check_catalog with
// the signatures it was planned with; a mismatch raises SQLSTATE TS001
// (IsCatalogChanged), so a stale catalog fails the statement instead of
// letting a cascade it did not know about remove rows uncaptured.
//
// # Privileges
//
// Application roles (PUBLIC) may insert into batches and the shadow
// tables, use the batch sequence and execute check_catalog — nothing
// more: INSERT … SELECT from a data-modifying CTE needs no SELECT on its
// target, so the rewritten statements work while the tombstones, which
// hold deleted personal data, stay unreadable. Members of the
// tombstone_admin role (created by Install) may read, restore and purge;
// the admin functions check membership first and raise SQLSTATE 42501
// with the hint "GRANT tombstone_admin TO <role>" otherwise, then run
// with the caller's privileges (a restore needs INSERT on the restored
// tables).
//
// # Undelete
//
// Every undelete (a batch, a transaction, or selected rows with their
// cascade descendants) runs through one function, tombstone._restore: in
// one transaction it re-inserts rows parents first (topological order over
// the current foreign keys; a self-referencing table's rows go in one
// INSERT, which Postgres checks at the end of the statement), with
// OVERRIDING SYSTEM VALUE for GENERATED ALWAYS identities and without
// stored generated columns (they are recomputed); it re-links SET NULL /
// SET DEFAULT children whose key is still NULL (or the default) to parents
// that exist again; and it removes the restored tombstones. Conflicts with
// rows written since the delete FAIL (23505, keys in the detail), SKIP
// (the skipped rows stay tombstones) or OVERWRITE. A dry run computes the
// same report and changes nothing. Application triggers on the restored
// tables fire as for any INSERT/UPDATE; a DBA who does not want them can
// restore with session_replication_role = replica (superuser).
//
// # Reaper
//
// Reap purges what is due by the database clock, chunk by chunk, each
// chunk one short transaction with lock_timeout and statement_timeout
// (sql/functions_reaper.sql: reap_chunk, reap_trash, reaper_due). Held
// batches are skipped, the pause flag is read FOR SHARE before every
// chunk, batch rows are locked FOR UPDATE SKIP LOCKED, and a batch is
// marked purged only by the transaction that deletes its last tombstone,
// so a reaper killed at any point leaves a consistent store. A Fence
// (package coord's Redis lease or advisory lock) is checked before each
// chunk; a Redis lease's token is also checked by the database
// (settings 'reaper.fence', SQLSTATE TS010).
package tombstone
