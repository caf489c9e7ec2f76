// Package rewrite turns SQL that removes rows from protected tables into
// SQL that removes the same rows and keeps a tombstone of each of them.
// It is pure: SQL text and a Catalog in, SQL text and metadata out; it
// does no I/O and never talks to a database.
//
// The proxy calls MayRemoveRows on every Query (a fast keyword scan) and,
// when it says yes, Rewrite (or Cache.Rewrite). Rewrite parses the text
// with pg_query (the real Postgres parser), classifies each top-level
// statement (Classify), and rewrites only those that delete from a table
// the Catalog protects; every other statement keeps its bytes, and text
// that does not parse is passed through for Postgres to reject.
//
// A top-level "DELETE FROM t … WHERE p" becomes one atomic statement:
//
//	WITH <the user's own CTEs>,
//	  _ts_d0  AS (DELETE FROM t … WHERE p RETURNING <user list>, 1 AS _ts_row, t.key AS _ts_k0),
//	  _ts_dN  AS (DELETE FROM ONLY child … WHERE fk = ANY (SELECT _ts_k0 FROM _ts_d0) …),  -- ON DELETE CASCADE
//	  _ts_sN  AS (SELECT … FROM ONLY child WHERE fk = ANY (…)),                                   -- ON DELETE SET NULL, counted
//	  _ts_b   AS (INSERT INTO tombstone.batches (client_addr, sql, tables) … WHERE EXISTS (SELECT 1 FROM _ts_d0)
//	                AND tombstone.check_catalog('t'::regclass, '<signature>'))
//	SELECT FROM _ts_d0                                                  -- or SELECT * FROM _ts_d0 with RETURNING
//
// The tombstones are not in it, and the statement keeps of each removed
// row only the columns foreign keys reference (so SELECT privilege is
// needed where the plain DELETE needs it, but for those keys): the
// tables' capture triggers (installed by package tombstone) copy the
// rows each table lost in the statement
// into its shadow table, in the batch the batch row's trigger names for
// them, so that no application role writes a shadow table.
//
// All sub-statements share one snapshot, so the cascade CTEs see the
// parent rows the first CTE deletes, and Postgres's own referential
// actions find nothing left to do when they run at the end of the
// statement. A self-referencing CASCADE is resolved with a recursive
// query over the referenced key. The check_catalog guard makes a stale
// catalog raise an error instead of losing rows.
//
// Because the final statement differs, the proxy repairs the answer with
// the Statement's Output: the command tag ("SELECT n" becomes "DELETE
// n"), the rows of no column not sent and, with RETURNING, the hidden
// trailing columns to strip from RowDescription and DataRow. Result.OriginalPosition maps an
// error position in the rewritten text back to the client's text.
//
// DELETEs in the top-level WITH of any statement, PREPARE … AS DELETE and
// EXPLAIN ANALYZE DELETE are rewritten the same way. MERGE … THEN DELETE,
// DELETE … WHERE CURRENT OF and deletes inside COPY, CREATE TABLE AS or
// DECLARE on protected tables cannot be captured and are refused with an
// *pgerr.Error carrying a SQLSTATE and a hint.
//
// Trees are built from pg_query protobuf nodes, never by pasting user
// text into SQL; every rewritten statement is deparsed, parsed again and
// checked before it is returned.
package rewrite
