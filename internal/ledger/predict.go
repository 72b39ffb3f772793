package ledger

import "context"

// Predict says what Begin would decide for id now, and writes nothing: a
// dry run's answer to "what would the ledger do with this command?". rec is
// the record the decision rests on (the command's own, or the claim that
// keeps its request busy); found is false when there is none, a first try.
func (l *Ledger) Predict(ctx context.Context, id Identity, replay bool) (d Decision, rec Record, found bool, err error) {
	doc, _, err := l.load(ctx, RequestKey(id.Request))
	if err != nil {
		return 0, Record{}, false, err
	}
	now := l.cfg.Now()
	cur, ok := doc.Commands[id.Key]
	if ok {
		if d, take := decide(cur, id, replay, now); !take {
			return d, cur, true, nil
		}
	}
	if other, ok := doc.heldByAnother(id.Key, now); ok {
		return Busy, other, true, nil
	}
	return Claimed, cur, ok, nil
}
