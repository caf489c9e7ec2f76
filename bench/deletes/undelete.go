package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
)

// runUndelete measures UNDELETE BATCH of the rows a tombstoned DELETE
// removed (the console command, through the proxy) against the plain way
// to put the same rows back: INSERT INTO t SELECT … FROM a copy of them,
// straight to Postgres. Each round starts from the same table state: the
// 200k rows, 50k of them deleted (tombstoned, or copied aside first).
func runUndelete(directDSN, proxyDSN string, rows, del, rounds int, mdPath string) error {
	ctx := context.Background()
	d, err := pgx.Connect(ctx, directDSN)
	if err != nil {
		return err
	}
	defer d.Close(ctx)
	p, err := pgx.Connect(ctx, proxyDSN)
	if err != nil {
		return err
	}
	defer p.Close(ctx)
	every := rows / del
	pick := fmt.Sprintf("id %% %d = 0", every)
	reset := func() error {
		_, err := d.Exec(ctx, fmt.Sprintf(`TRUNCATE bench_items;
			INSERT INTO bench_items (id, tenant, name, payload)
			SELECT i, i %% 1000, 'item ' || i, jsonb_build_object('i', i, 'tag', 'x') FROM generate_series(1, %d) i;
			DROP TABLE IF EXISTS bench_items_copy`, rows))
		if err != nil {
			return err
		}
		_, err = d.Exec(ctx, "VACUUM ANALYZE bench_items")
		return err
	}
	var plain, undo []time.Duration
	for r := range rounds {
		for _, which := range rotate(r, []string{"insert-select", "undelete"}) {
			if err := reset(); err != nil {
				return err
			}
			var dt time.Duration
			var n int64
			if which == "insert-select" {
				if _, err := d.Exec(ctx, "CREATE TABLE bench_items_copy AS SELECT * FROM bench_items WHERE "+pick+"; DELETE FROM bench_items WHERE "+pick); err != nil {
					return err
				}
				if _, err := d.Exec(ctx, "VACUUM ANALYZE bench_items, bench_items_copy"); err != nil {
					return err
				}
				start := time.Now()
				tag, err := d.Exec(ctx, "INSERT INTO bench_items SELECT * FROM bench_items_copy", pgx.QueryExecModeSimpleProtocol)
				dt = time.Since(start)
				if err != nil {
					return err
				}
				n = tag.RowsAffected()
				plain = append(plain, dt)
			} else {
				if _, err := p.Exec(ctx, "DELETE FROM bench_items WHERE "+pick, pgx.QueryExecModeSimpleProtocol); err != nil {
					return err
				}
				if _, err := d.Exec(ctx, "VACUUM ANALYZE bench_items"); err != nil {
					return err
				}
				var batch int64
				if err := d.QueryRow(ctx, "SELECT max(id) FROM tombstone.batches").Scan(&batch); err != nil {
					return err
				}
				start := time.Now()
				err := p.QueryRow(ctx, fmt.Sprintf("UNDELETE BATCH %d", batch), pgx.QueryExecModeSimpleProtocol).Scan(nil, &n, nil, nil)
				dt = time.Since(start)
				if err != nil {
					return err
				}
				undo = append(undo, dt)
			}
			if n != int64(del) {
				return fmt.Errorf("%s put back %d rows, want %d", which, n, del)
			}
			fmt.Fprintf(os.Stderr, "round %d/%d  %-13s %d rows: %v\n", r+1, rounds, which, n, dt.Round(time.Millisecond))
		}
	}
	mp, mu := median(plain), median(undo)
	fmt.Printf("\nput back %d of %d rows, median of %d rounds\n", del, rows, rounds)
	fmt.Printf("%-34s %10s\n", "INSERT … SELECT from a copy", ms(mp))
	fmt.Printf("%-34s %10s\n", "UNDELETE BATCH (console, proxy)", ms(mu))
	fmt.Printf("%-34s %10.2fx   (goal <= 1.5x)\n", "UNDELETE / INSERT … SELECT", float64(mu)/float64(mp))
	return appendMD(mdPath, func(f *os.File) {
		fmt.Fprintf(f, "## UNDELETE\n\nPutting back the %d rows deleted above (of %d), median of %d interleaved rounds: `UNDELETE BATCH n` through the proxy's console vs a plain `INSERT INTO t SELECT * FROM <copy of the rows>` straight to Postgres (goal: at most 1.5x).\n\n", del, rows, rounds)
		fmt.Fprintf(f, "| INSERT … SELECT (direct) | UNDELETE BATCH (proxy) | undelete / insert |\n| ---: | ---: | ---: |\n")
		fmt.Fprintf(f, "| %s | %s | %.2fx |\n\n", ms(mp), ms(mu), float64(mu)/float64(mp))
	})
}

// runSelective deletes a whole table of bigRows rows (tenants tenants) in
// one tombstoned statement, then restores 3 tenants out of that batch per
// round with UNDELETE FROM … WHERE tenant IN (…) BATCH n (goal: < 1 s).
func runSelective(directDSN, proxyDSN string, bigRows, tenants, rounds int, mdPath string) error {
	ctx := context.Background()
	d, err := pgx.Connect(ctx, directDSN)
	if err != nil {
		return err
	}
	defer d.Close(ctx)
	if _, err := d.Exec(ctx, fmt.Sprintf(`DROP TABLE IF EXISTS bench_big;
		CREATE TABLE bench_big (id bigint PRIMARY KEY, tenant int NOT NULL, name text NOT NULL, payload jsonb,
			created timestamptz NOT NULL DEFAULT now());
		INSERT INTO bench_big (id, tenant, name, payload)
		SELECT i, i %% %d, 'item ' || i, jsonb_build_object('i', i, 'tag', 'x') FROM generate_series(1, %d) i`,
		tenants, bigRows)); err != nil {
		return err
	}
	if _, err := d.Exec(ctx, "VACUUM ANALYZE bench_big"); err != nil {
		return err
	}
	p, err := pgx.Connect(ctx, proxyDSN)
	if err != nil {
		return err
	}
	defer p.Close(ctx)
	start := time.Now()
	tag, err := p.Exec(ctx, "DELETE FROM bench_big WHERE tenant >= 0", pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "tombstoned DELETE of %d rows: %v\n", tag.RowsAffected(), time.Since(start).Round(time.Millisecond))
	var batch int64
	var shadow string
	if err := d.QueryRow(ctx, "SELECT max(id), tombstone.shadow_name('bench_big') FROM tombstone.batches").Scan(&batch, &shadow); err != nil {
		return err
	}
	if _, err := d.Exec(ctx, fmt.Sprintf("VACUUM ANALYZE tombstone.%q", shadow)); err != nil {
		return err
	}
	var ds []time.Duration
	perTenant := int64(bigRows / tenants)
	for r := range rounds {
		a := 7 + r*3
		cmd := fmt.Sprintf("UNDELETE FROM bench_big WHERE tenant IN (%d, %d, %d) BATCH %d", a, a+1, a+2, batch)
		var n int64
		start := time.Now()
		err := p.QueryRow(ctx, cmd, pgx.QueryExecModeSimpleProtocol).Scan(nil, &n, nil, nil)
		dt := time.Since(start)
		if err != nil {
			return err
		}
		if n != 3*perTenant {
			return fmt.Errorf("restored %d rows, want %d", n, 3*perTenant)
		}
		fmt.Fprintf(os.Stderr, "round %d/%d  %s: %d rows in %v\n", r+1, rounds, cmd, n, dt.Round(time.Millisecond))
		ds = append(ds, dt)
	}
	m := median(ds)
	fmt.Printf("\nselective restore: 3 tenants (%d rows) out of one batch of %d tombstoned rows, median of %d rounds\n", 3*perTenant, bigRows, rounds)
	fmt.Printf("%-34s %10s   (goal < 1 s)\n", "UNDELETE FROM … WHERE tenant IN", ms(m))
	return appendMD(mdPath, func(f *os.File) {
		fmt.Fprintf(f, "## Selective restore\n\n`UNDELETE FROM bench_big WHERE tenant IN (a, b, c) BATCH n` through the proxy: 3 of %d tenants (%d rows) out of one batch of %d tombstoned rows, median of %d rounds (goal: under 1 s).\n\n", tenants, 3*perTenant, bigRows, rounds)
		fmt.Fprintf(f, "| rows in the batch | rows restored | median |\n| ---: | ---: | ---: |\n| %d | %d | %s |\n\n", bigRows, 3*perTenant, ms(m))
	})
}

func appendMD(path string, write func(*os.File)) error {
	if path == "" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	write(f)
	return f.Close()
}
