// Package coord coordinates a fleet of tombstone processes: who may run
// the reaper right now.
//
// A Lease is held by one process at a time. With Redis (RedisLease) it is
// a key written with SET NX PX, renewed in the background well before it
// expires, and fenced: every acquisition takes a new, larger token (INCR
// on a companion key), Check verifies ownership and token atomically in a
// Lua script before each unit of work, and the reaper also hands the token
// to the database, which refuses a token older than one it has seen — so
// a process that stalled past its lease (a long GC pause, a frozen VM)
// cannot do work after its successor started. Without Redis an
// AdvisoryLock (pg_try_advisory_lock on the session that does the work)
// gives the same one-at-a-time guarantee per database: the lock dies with
// the session, and the work with it.
package coord
