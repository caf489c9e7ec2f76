package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"time"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// parseCheckCmd parses the statement on standard input with pg_query and
// exits: the proxy's trial parse, run in a process of its own so that a
// crash in pg_query's C code ends only this process.
type parseCheckCmd struct{}

func (parseCheckCmd) Run(std *stdio) error {
	sql, err := io.ReadAll(os.Stdin)
	if err != nil {
		return err
	}
	_, _ = pg.Parse(string(sql)) // an error is the proxy's own parse's to report
	return nil
}

// trialSlots bounds how many trial parses run at once: each is a process,
// and many sessions sending long statements together would otherwise
// start as many (a review measured 100 sessions x 3 statements of 91 kB
// at 11x the direct time). More wait their turn.
var trialSlots = make(chan struct{}, max(2, runtime.NumCPU()))

// trialParse runs `tombstone parse-check` on sql: nil when pg_query parsed
// (or refused) it and exited, an error when it crashed or hung.
func trialParse(sql string) error {
	trialSlots <- struct{}{}
	defer func() { <-trialSlots }()
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("trial parse: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, self, "parse-check")
	cmd.Stdin = bytes.NewReader([]byte(sql))
	err = cmd.Run() // a crash in cgo exits 2 with the Go runtime's report
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee):
		return fmt.Errorf("the parser crashed on it (%v)", ee)
	default:
		return fmt.Errorf("trial parse: %w", err)
	}
}
