package coord

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// ErrLeaseLost is returned by Check when the lease expired or another
// holder took it: the caller must stop working at once.
var ErrLeaseLost = errors.New("coord: lease lost")

// Lease is a held, exclusive right to do some work.
type Lease interface {
	// Check confirms, before each unit of work, that the lease is still
	// held, and returns its fencing token (0 when the lease has none:
	// the database need not check it). It returns ErrLeaseLost when
	// the lease is gone.
	Check(ctx context.Context) (token int64, err error)
	// Release gives the lease up (a no-op if it is already lost).
	Release(ctx context.Context) error
}

// RedisLease is a lease on a Redis key.
type RedisLease struct {
	rdb   redis.UniversalClient
	key   string
	value string // owner id + ":" + token
	token int64
	ttl   time.Duration

	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	lostErr error
}

// acquireScript: SET key value NX PX ttl; on success a fresh token is
// INCR'd on KEYS[2], raised above ARGV[3] (the newest token the database
// has seen) if Redis lost its keys, and stored in the lease value.
var acquireScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local t = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[3])
if t <= floor then
  t = floor + 1
  redis.call('SET', KEYS[2], t)
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. t, 'PX', ARGV[2])
return t
`)

// checkScript renews the lease if (and only if) it still holds our value.
var checkScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`)

var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// AcquireRedis tries once to take the lease key for ttl. ok is false
// (and err nil) when someone else holds it. minToken is the newest
// fencing token the fenced resource has seen; the new token is larger.
// A held lease renews itself every ttl/3 until Release; Check reports it
// lost if a renewal finds it gone.
func AcquireRedis(ctx context.Context, rdb redis.UniversalClient, key string, ttl time.Duration, minToken int64) (*RedisLease, bool, error) {
	if ttl < 30*time.Millisecond {
		return nil, false, fmt.Errorf("coord: lease ttl %v is too short", ttl)
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	owner := hex.EncodeToString(id[:])
	res, err := acquireScript.Run(ctx, rdb, []string{key, key + ":token"}, owner, ttl.Milliseconds(), minToken).Int64()
	if err != nil {
		return nil, false, fmt.Errorf("coord: acquire %s: %w", key, err)
	}
	if res == 0 {
		return nil, false, nil
	}
	l := &RedisLease{
		rdb: rdb, key: key, value: owner + ":" + strconv.FormatInt(res, 10), token: res, ttl: ttl,
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	go l.renew()
	return l, true, nil
}

// Token is the lease's fencing token.
func (l *RedisLease) Token() int64 { return l.token }

// Key is the Redis key of the lease.
func (l *RedisLease) Key() string { return l.key }

func (l *RedisLease) renew() {
	defer close(l.done)
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), l.ttl/3)
			err := l.extend(ctx)
			cancel()
			if errors.Is(err, ErrLeaseLost) {
				l.setLost(err)
				return
			}
			// A transient Redis error: keep trying; Check fails if the
			// lease really lapses.
		}
	}
}

func (l *RedisLease) extend(ctx context.Context) error {
	ok, err := checkScript.Run(ctx, l.rdb, []string{l.key}, l.value, l.ttl.Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("coord: check lease %s: %w", l.key, err)
	}
	if ok != 1 {
		return fmt.Errorf("%w: %s is no longer ours (token %d)", ErrLeaseLost, l.key, l.token)
	}
	return nil
}

func (l *RedisLease) setLost(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lostErr == nil {
		l.lostErr = err
	}
}

// Check verifies in Redis, atomically, that the lease still holds this
// holder's value (and so its token), renews it, and returns the token.
// A Redis error is returned as is: the caller cannot know that it still
// holds the lease and must not work.
func (l *RedisLease) Check(ctx context.Context) (int64, error) {
	l.mu.Lock()
	lost := l.lostErr
	l.mu.Unlock()
	if lost != nil {
		return 0, lost
	}
	if err := l.extend(ctx); err != nil {
		if errors.Is(err, ErrLeaseLost) {
			l.setLost(err)
		}
		return 0, err
	}
	return l.token, nil
}

// Release stops renewing and deletes the key if it is still ours.
func (l *RedisLease) Release(ctx context.Context) error {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
	if err := releaseScript.Run(ctx, l.rdb, []string{l.key}, l.value).Err(); err != nil {
		return fmt.Errorf("coord: release %s: %w", l.key, err)
	}
	return nil
}

// AdvisoryLock is a lease held as a session-level Postgres advisory lock
// on the connection that does the work: one holder per database, released
// when the session ends however it ends.
type AdvisoryLock struct {
	conn *pgx.Conn
	key  int64
}

// AcquireAdvisory tries once (pg_try_advisory_lock) to take the advisory
// lock key on conn. ok is false when another session holds it.
func AcquireAdvisory(ctx context.Context, conn *pgx.Conn, key int64) (*AdvisoryLock, bool, error) {
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&ok); err != nil {
		return nil, false, fmt.Errorf("coord: advisory lock: %w", err)
	}
	if !ok {
		return nil, false, nil
	}
	return &AdvisoryLock{conn: conn, key: key}, true, nil
}

// Check reports ErrLeaseLost when the session is gone (and with it the
// lock). The token is 0: the lock lives in the very session that does
// the work, so the database needs no fencing token.
func (a *AdvisoryLock) Check(ctx context.Context) (int64, error) {
	if a.conn.IsClosed() {
		return 0, fmt.Errorf("%w: the session holding advisory lock %d has ended", ErrLeaseLost, a.key)
	}
	return 0, nil
}

// Release unlocks (pg_advisory_unlock).
func (a *AdvisoryLock) Release(ctx context.Context) error {
	if a.conn.IsClosed() {
		return nil
	}
	if _, err := a.conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", a.key); err != nil {
		return fmt.Errorf("coord: advisory unlock: %w", err)
	}
	return nil
}

// KeyFor joins a key prefix and parts into a Redis key: "prefix" + parts
// joined by ":".
func KeyFor(prefix string, parts ...string) string {
	return prefix + strings.Join(parts, ":")
}
