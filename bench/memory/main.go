// Command memory measures the proxy's memory for long statements (make
// bench, section memory): DELETE … WHERE id IN (…) texts of 0.5, 10 and
// 50 MB sent through the proxy one after another, then 16 sessions
// sending 0.5 MB ones at once; after each step it reads the proxy's peak
// and current resident set (VmHWM, VmRSS) from /proc/<pid>/status.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
)

func main() {
	dsn := flag.String("proxy", "", "URL through the proxy")
	pid := flag.Int("pid", 0, "the proxy's process id")
	md := flag.String("md", "", "write the results as Markdown here")
	flag.Parse()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, *dsn)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Exec(ctx, `DROP TABLE IF EXISTS mem_t; CREATE TABLE mem_t (id bigint PRIMARY KEY);
		INSERT INTO mem_t SELECT generate_series(1, 1000)`); err != nil {
		log.Fatal(err)
	}
	var out strings.Builder
	out.WriteString("### Proxy memory for long statements\n\n")
	out.WriteString("| step | answer | proxy peak RSS (VmHWM) | proxy RSS after |\n| --- | --- | --- | --- |\n")
	row := func(step, answer string) {
		hwm, rss := status(*pid)
		fmt.Fprintf(&out, "| %s | %s | %s | %s |\n", step, answer, hwm, rss)
	}
	row("idle, after set-up", "")
	for _, kb := range []int{500, 10_000, 50_000} {
		row(fmt.Sprintf("one DELETE of %g MB", float64(kb)/1000), answer(c.Exec(ctx, deleteOf(kb*1000))))
	}
	var wg sync.WaitGroup
	answers := make([]string, 16)
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := pgx.Connect(ctx, *dsn)
			if err != nil {
				answers[i] = err.Error()
				return
			}
			defer s.Close(ctx)
			answers[i] = answer(s.Exec(ctx, deleteOf(500_000)))
		}()
	}
	wg.Wait()
	row("16 sessions, a DELETE of 0.5 MB each, at once", answers[0])
	fmt.Print(out.String())
	if *md != "" {
		if err := os.WriteFile(*md, []byte(out.String()), 0o644); err != nil {
			log.Fatal(err)
		}
	}
}

// deleteOf is a DELETE of about n bytes: ids beyond the table's, so that
// nothing is deleted and only the text's cost shows.
func deleteOf(n int) string {
	var b strings.Builder
	b.Grow(n + 32)
	b.WriteString("DELETE FROM mem_t WHERE id IN (")
	for i := 10_000_000; b.Len() < n; i++ {
		b.WriteString(strconv.Itoa(i))
		b.WriteString(", ")
	}
	b.WriteString("0)")
	return b.String()
}

func answer(tag any, err error) string {
	if err != nil {
		if s := err.Error(); len(s) > 60 {
			return s[:60] + "…"
		}
		return err.Error()
	}
	return fmt.Sprint(tag)
}

func status(pid int) (hwm, rss string) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?", "?"
	}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.Atoi(f[1])
		switch f[0] {
		case "VmHWM:":
			hwm = fmt.Sprintf("%d MB", kb/1024)
		case "VmRSS:":
			rss = fmt.Sprintf("%d MB", kb/1024)
		}
	}
	return hwm, rss
}
