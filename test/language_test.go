package test

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"
)

// germanMessages is the lc_messages the test sets; scripts/deps.sh
// generates the OS locale (Postgres refuses a locale the OS lacks).
const germanMessages = "de_DE.UTF-8"

// TestRepairsInAnotherLanguage: the replies the proxy repairs — the
// CONTEXT of an error raised inside the store's functions, a Bind's
// result-format count that includes hidden columns — come out as
// Postgres would have sent them directly, when the session's messages
// are German: no repair depends on the English text of a message.
func TestRepairsInAnotherLanguage(t *testing.T) {
	e := newEnv(t, `CREATE TABLE t (id int PRIMARY KEY, v text);
INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 5) g;
CREATE TABLE guarded (id int); INSERT INTO guarded VALUES (1);
CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'guarded bleibt'; END $$;
CREATE TRIGGER refuse BEFORE TRUNCATE ON guarded FOR EACH STATEMENT EXECUTE FUNCTION refuse();
CREATE TABLE parent (id int PRIMARY KEY); CREATE TABLE child (p int REFERENCES parent);
INSERT INTO parent VALUES (1); INSERT INTO child VALUES (1);
CREATE TABLE ev (id int) PARTITION BY LIST (id); CREATE TABLE ev_1 (id int);
CREATE FUNCTION no_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'keine DDL: %', tg_tag; END $$;`)
	type msgs = []pgproto3.FrontendMessage
	set := msgs{q("SET lc_messages = '" + germanMessages + "'")}
	del := "DELETE FROM t WHERE id = $1 RETURNING *"
	cases := map[string][]msgs{
		// The hidden column's format is added to a Bind that gives one
		// per column; Postgres's error counts both without it.
		"a Bind with the wrong number of result formats": {set,
			{&pgproto3.Parse{Name: "rf", Query: del}, &pgproto3.Sync{}},
			{&pgproto3.Bind{PreparedStatement: "rf", Parameters: [][]byte{[]byte("1")}, ResultFormatCodes: []int16{0, 0, 0}},
				&pgproto3.Execute{}, &pgproto3.Sync{}},
		},
		// A user's trigger fails the TRUNCATE the store's function runs:
		// its frame stays, the store's frames go.
		"a TRUNCATE trigger's error": {set, {q("TRUNCATE guarded")}},
		// Postgres's own error for the statement the store ran: no
		// CONTEXT at all, as directly.
		"Postgres refusing the TRUNCATE": {set, {q("TRUNCATE parent")}},
		// A statement over several lines run by the store (guarded DDL),
		// failed by a user's event trigger.
		"an event trigger's error in a statement over lines": {set,
			{q("CREATE EVENT TRIGGER no_ddl ON ddl_command_start WHEN TAG IN ('ALTER TABLE') EXECUTE FUNCTION no_ddl()")},
			{q("ALTER TABLE ev ATTACH PARTITION ev_1\n  FOR VALUES IN (1)")},
			{q("DROP EVENT TRIGGER no_ddl")},
		},
	}
	for name, steps := range cases {
		t.Run(name, func(t *testing.T) {
			want := converse(t, e.direct, steps)
			require.Contains(t, want, `"Severity":"FEHLER"`, "the server speaks German (is the locale %s installed? scripts/deps.sh)", germanMessages)
			got := converse(t, e.proxy, steps)
			require.Equal(t, want, got)
			require.NotContains(t, got, "tombstone.")
			require.NotContains(t, got, "_exec_as")
		})
	}
	// The repairs did run: what the store's function raised has its
	// CONTEXT (a frame of the user's trigger) in German.
	got := converse(t, e.proxy, cases["a TRUNCATE trigger's error"])
	require.Contains(t, got, "PL/pgSQL-Funktion refuse() Zeile 2 bei RAISE")
}
