// Package console parses tombstone's admin commands (SHOW BATCHES,
// UNDELETE BATCH 42 DRY RUN, …) — a small grammar of its own, in the style
// of PgBouncer's admin console — and turns each into one SQL statement that
// calls the tombstone schema's functions. The proxy runs that statement on
// the session's own server connection, so a command runs inside the
// session's transaction with the session's privileges, and its answer is an
// ordinary result set psql prints well. The CLI calls the same functions.
//
// The package is pure: text in, SQL out. Identifiers and literals are
// re-quoted, and predicates are validated with the real Postgres parser to
// be exactly one expression, so no command text can inject SQL.
package console
