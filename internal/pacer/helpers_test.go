package pacer_test

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/graphops/worker/internal/pacer"
)

// memFleet is an in-memory Fleet. Each Update works on a JSON copy, as a
// store-backed fleet does, so nothing is shared by accident.
type memFleet struct {
	mu     sync.Mutex
	states map[string][]byte
	// fail, when set, is returned by Update instead of touching the state.
	fail error
	// block, when set, makes Update wait for it or for ctx.
	block chan struct{}
}

func newMemFleet() *memFleet { return &memFleet{states: map[string][]byte{}} }

func (f *memFleet) Update(ctx context.Context, op string, modify func(*pacer.FleetState)) (pacer.FleetState, error) {
	f.mu.Lock()
	block, fail := f.block, f.fail
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return pacer.FleetState{}, ctx.Err()
		}
	}
	if fail != nil {
		return pacer.FleetState{}, fail
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var st pacer.FleetState
	if b, ok := f.states[op]; ok {
		if err := json.Unmarshal(b, &st); err != nil {
			return pacer.FleetState{}, err
		}
	}
	modify(&st)
	b, err := json.Marshal(st)
	if err != nil {
		return pacer.FleetState{}, err
	}
	f.states[op] = b
	var out pacer.FleetState
	err = json.Unmarshal(b, &out)
	return out, err
}

// state is the stored state of op.
func (f *memFleet) state(op string) pacer.FleetState {
	f.mu.Lock()
	defer f.mu.Unlock()
	var st pacer.FleetState
	_ = json.Unmarshal(f.states[op], &st)
	return st
}
