package coord_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/coord"
	"github.com/tombstone-proxy/tombstone/internal/testenv"
)

// key is a Redis key no other test (of any package) uses.
func key(t *testing.T) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "tombstone-test:" + t.Name() + ":" + hex.EncodeToString(b[:])
}

func client(t *testing.T) *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

func TestRedisLeaseExclusiveAndFenced(t *testing.T) {
	ctx := context.Background()
	rdb := client(t)
	k := key(t)
	t.Cleanup(func() { rdb.Del(ctx, k, k+":token") })

	a, ok, err := coord.AcquireRedis(ctx, rdb, k, 300*time.Millisecond, 0)
	require.NoError(t, err)
	require.True(t, ok)
	_, ok, err = coord.AcquireRedis(ctx, rdb, k, 300*time.Millisecond, 0)
	require.NoError(t, err)
	require.False(t, ok, "a second holder got the lease")

	// Renewed in the background: still ours well past the ttl.
	time.Sleep(700 * time.Millisecond)
	tok, err := a.Check(ctx)
	require.NoError(t, err)
	require.Equal(t, a.Token(), tok)

	// Taken over (it expired, say, during a long pause): Check fails and
	// the new holder's token is larger.
	rdb.Del(ctx, k)
	b, ok, err := coord.AcquireRedis(ctx, rdb, k, time.Second, 0)
	require.NoError(t, err)
	require.True(t, ok)
	require.Greater(t, b.Token(), a.Token())
	_, err = a.Check(ctx)
	require.ErrorIs(t, err, coord.ErrLeaseLost)
	// The loser's release does not free the winner's lease.
	require.NoError(t, a.Release(ctx))
	_, err = b.Check(ctx)
	require.NoError(t, err)
	require.NoError(t, b.Release(ctx))
	_, err = b.Check(ctx)
	require.ErrorIs(t, err, coord.ErrLeaseLost)

	// A Redis that lost its keys still hands out a token above the
	// database's newest.
	rdb.Del(ctx, k+":token")
	c, ok, err := coord.AcquireRedis(ctx, rdb, k, time.Second, 41)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, int64(42), c.Token())
	require.NoError(t, c.Release(ctx))
}

func TestAdvisoryLock(t *testing.T) {
	ctx := context.Background()
	a := testenv.Connect(t, testenv.PGURL(t))
	b := testenv.Connect(t, testenv.PGURL(t))
	var k int64
	require.NoError(t, a.QueryRow(ctx, "SELECT (random() * 1e15)::bigint").Scan(&k))
	la, ok, err := coord.AcquireAdvisory(ctx, a, k)
	require.NoError(t, err)
	require.True(t, ok)
	_, ok, err = coord.AcquireAdvisory(ctx, b, k)
	require.NoError(t, err)
	require.False(t, ok)
	tok, err := la.Check(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(0), tok)
	require.NoError(t, la.Release(ctx))
	lb, ok, err := coord.AcquireAdvisory(ctx, b, k)
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, b.Close(ctx))
	_, err = lb.Check(ctx)
	require.ErrorIs(t, err, coord.ErrLeaseLost)
}
