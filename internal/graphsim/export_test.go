package graphsim

// SetBeginHook makes every call run f once it is registered as in flight and
// before its latency, so that tests can hold calls in flight deterministically.
// Set it before the first call.
func SetBeginHook(s *Sim, f func()) { s.hookBegun = f }
