package command

import "strings"

// allowedHeader returns the canonical spelling of an allowed extra request
// header (SPEC §2), "" when name is not allowed. Authorization,
// Content-Type and client-request-id are the worker's own.
func allowedHeader(name string) string {
	for _, h := range [...]string{"x-ms-throttle-priority", "Prefer", "ConsistencyLevel"} {
		if strings.EqualFold(name, h) {
			return h
		}
	}
	return ""
}

// headers reads data.headers: an optional object of allowed header names to
// string values. null counts as absent (a serializer's empty map). A name
// given twice in different case never gets here: walk refuses keys inside
// data that differ only in case.
func (p *parser) headers(data int32) (map[string]string, *Error) {
	t := p.t
	hi := t.member(data, "headers")
	if hi == none || t.nodes[hi].kind == kindNull {
		return nil, nil
	}
	if t.nodes[hi].kind != kindObject {
		return nil, p.wrong("data.headers", "must be a JSON object of header names to string values, not %s", t.nodes[hi].kind)
	}
	var out map[string]string
	for c := t.nodes[hi].first; c != none; c = t.nodes[c].next {
		name := t.nodes[c].key
		field := joinPath("data.headers", name)
		canon := allowedHeader(name)
		if canon == "" {
			return nil, p.wrong(field, "header is not allowed; allowed: x-ms-throttle-priority, Prefer, ConsistencyLevel "+
				"(Authorization, Content-Type and client-request-id are set by the worker)")
		}
		v, ok := t.str(c)
		if !ok {
			return nil, p.wrong(field, "must be a string, not %s", t.nodes[c].kind)
		}
		for i := 0; i < len(v); i++ {
			switch c := v[i]; {
			case c == '\r' || c == '\n':
				return nil, p.wrong(field, "contains CR or LF, which would split the header")
			case c < 0x20 || c == 0x7f:
				return nil, p.wrong(field, "contains a control character")
			case c > 0x7f:
				return nil, p.wrong(field, "contains a non-ASCII character; header values are ASCII")
			}
		}
		if out == nil {
			out = make(map[string]string, 3)
		}
		out[canon] = strings.Clone(v) // not a substring of the whole message (see walk)
	}
	return out, nil
}
