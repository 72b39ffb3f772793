package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RemoveRedisPrefix deletes every key under prefix at the Redis at addr: what
// a test wrote into a Redis it may share. SCAN, not KEYS, which would block
// a shared Redis while it walks every key; and a minute, as a Redis holding
// a benchmark's keys takes long to walk on a busy machine.
func RemoveRedisPrefix(t testing.TB, addr, prefix string) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var keys []string
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	err := iter.Err()
	if err == nil && len(keys) > 0 {
		err = c.Del(ctx, keys...).Err()
	}
	if err != nil {
		t.Errorf("removing the keys under %s: %v", prefix, err)
	}
}
