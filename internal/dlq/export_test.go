package dlq

import "context"

// FailDeletes makes the store's message deletes fail with err until the
// returned restore is called: the delete failing after a replay's publish.
func FailDeletes(s *Store, err error) (restore func()) {
	orig := s.deleteMsg
	s.deleteMsg = func(context.Context, uint64) error { return err }
	return func() { s.deleteMsg = orig }
}
