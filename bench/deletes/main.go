// Command deletes measures what tombstoning costs: a DELETE of 50k of 200k
// rows through the proxy (tombstoned) against the same plain DELETE straight
// to Postgres, and the undelete of those rows against a plain INSERT …
// SELECT of them. Rounds are interleaved; medians and ratios are printed.
// `make bench` runs it (BENCH_SECTIONS=deletes) against its throwaway
// PostgreSQL and proxy.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

func main() {
	direct := flag.String("direct", "", "DSN straight to PostgreSQL")
	proxied := flag.String("proxy", "", "DSN through the tombstone proxy")
	rows := flag.Int("rows", 200_000, "rows in the table")
	del := flag.Int("delete", 50_000, "rows deleted")
	rounds := flag.Int("rounds", 3, "rounds")
	md := flag.String("md", "", "append a markdown table to this file")
	bigRows := flag.Int("big-rows", 1_000_000, "rows in the one batch the selective restore picks 3 tenants from (0 skips it)")
	tenants := flag.Int("tenants", 1000, "tenants in that table")
	flag.Parse()
	if err := run(*direct, *proxied, *rows, *del, *rounds, *md); err != nil {
		fmt.Fprintln(os.Stderr, "deletes:", err)
		os.Exit(1)
	}
	if err := runUndelete(*direct, *proxied, *rows, *del, *rounds, *md); err != nil {
		fmt.Fprintln(os.Stderr, "deletes: undelete:", err)
		os.Exit(1)
	}
	if *bigRows > 0 {
		if err := runSelective(*direct, *proxied, *bigRows, *tenants, *rounds, *md); err != nil {
			fmt.Fprintln(os.Stderr, "deletes: selective restore:", err)
			os.Exit(1)
		}
	}
}

func run(directDSN, proxyDSN string, rows, del, rounds int, mdPath string) error {
	ctx := context.Background()
	d, err := pgx.Connect(ctx, directDSN)
	if err != nil {
		return err
	}
	defer d.Close(ctx)
	// The table exists before the proxy first plans a DELETE on it.
	if _, err := d.Exec(ctx, `DROP TABLE IF EXISTS bench_items; CREATE TABLE bench_items (
		id bigint PRIMARY KEY, tenant int NOT NULL, name text NOT NULL, payload jsonb, created timestamptz NOT NULL DEFAULT now())`); err != nil {
		return err
	}
	p, err := pgx.Connect(ctx, proxyDSN)
	if err != nil {
		return err
	}
	defer p.Close(ctx)

	every := rows / del
	stmt := fmt.Sprintf("DELETE FROM bench_items WHERE id %% %d = 0", every)
	reset := func() error {
		_, err := d.Exec(ctx, fmt.Sprintf(`TRUNCATE bench_items;
			INSERT INTO bench_items (id, tenant, name, payload)
			SELECT i, i %% 1000, 'item ' || i, jsonb_build_object('i', i, 'tag', 'x') FROM generate_series(1, %d) i`, rows))
		if err != nil {
			return err
		}
		_, err = d.Exec(ctx, "VACUUM ANALYZE bench_items")
		return err
	}
	timed := func(c *pgx.Conn, sql string) (time.Duration, int64, error) {
		start := time.Now()
		tag, err := c.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol)
		return time.Since(start), tag.RowsAffected(), err
	}
	var plain, tomb []time.Duration
	for r := range rounds {
		for _, which := range rotate(r, []string{"plain", "tombstoned"}) {
			if err := reset(); err != nil {
				return err
			}
			conn := d
			if which == "tombstoned" {
				conn = p
			}
			dt, n, err := timed(conn, stmt)
			if err != nil {
				return fmt.Errorf("%s delete: %w", which, err)
			}
			if n != int64(del) {
				return fmt.Errorf("%s delete removed %d rows, want %d", which, n, del)
			}
			fmt.Fprintf(os.Stderr, "round %d/%d  %-10s DELETE %d of %d: %v\n", r+1, rounds, which, n, rows, dt.Round(time.Millisecond))
			if which == "plain" {
				plain = append(plain, dt)
			} else {
				tomb = append(tomb, dt)
			}
		}
	}
	mp, mt := median(plain), median(tomb)
	fmt.Printf("\nDELETE %d of %d rows, median of %d rounds\n", del, rows, rounds)
	fmt.Printf("%-28s %10s\n", "plain DELETE (direct)", ms(mp))
	fmt.Printf("%-28s %10s\n", "tombstoned DELETE (proxy)", ms(mt))
	fmt.Printf("%-28s %10.2fx\n", "tombstoned / plain", float64(mt)/float64(mp))
	if mdPath != "" {
		f, err := os.OpenFile(mdPath, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		fmt.Fprintf(f, "## Tombstoned DELETE\n\nDELETE of %d of %d rows (5 columns incl. jsonb), median of %d interleaved rounds.\n\n", del, rows, rounds)
		fmt.Fprintf(f, "| plain DELETE (direct) | tombstoned DELETE (proxy) | tombstoned / plain |\n| ---: | ---: | ---: |\n")
		fmt.Fprintf(f, "| %s | %s | %.2fx |\n\n", ms(mp), ms(mt), float64(mt)/float64(mp))
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// rotate changes which variant goes first each round, so neither always
// runs on a warmer cache.
func rotate(r int, xs []string) []string {
	out := make([]string, 0, len(xs))
	for i := range xs {
		out = append(out, xs[(i+r)%len(xs)])
	}
	return out
}
