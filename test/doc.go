// Package test holds end-to-end tests: real clients through an in-process
// proxy with the real planner and store, against the real PostgreSQL that
// `make test` starts. Each test run works in a database of its own.
package test
