package command

import (
	"strings"

	"golang.org/x/net/http/httpguts"
)

// allowedHeader returns the canonical spelling of an allowed extra request
// header (docs/SPEC.md §2), "" when name is not allowed. Authorization,
// Content-Type and client-request-id are the worker's own.
func allowedHeader(name string) string {
	if !httpguts.ValidHeaderFieldName(name) {
		return "" // and no Unicode case folding into an allowed name (ſ is s)
	}
	for _, h := range [...]string{"x-ms-throttle-priority", "Prefer", "ConsistencyLevel"} {
		if strings.EqualFold(name, h) {
			return h
		}
	}
	return ""
}

// headers reads data.headers: an optional object of allowed header names to
// string values. null counts as absent (a serializer's empty map). A name
// given twice in different case never gets here: Parse refuses keys inside
// data that differ only in case.
func (p *parser) headers(data *value) (map[string]string, *Error) {
	hi := data.member("headers")
	if hi == nil || hi.kind == kindNull {
		return nil, nil
	}
	if hi.kind != kindObject {
		return nil, p.wrong("data.headers", "must be a JSON object of header names to string values, not %s", hi.kind)
	}
	var out map[string]string
	for _, m := range hi.members {
		name := m.key
		field := joinPath("data.headers", name)
		canon := allowedHeader(name)
		if canon == "" {
			return nil, p.wrong(field, "header is not allowed; allowed: x-ms-throttle-priority, Prefer, ConsistencyLevel "+
				"(Authorization, Content-Type and client-request-id are set by the worker)")
		}
		v, ok := m.val.str()
		if !ok {
			return nil, p.wrong(field, "must be a string, not %s", m.val.kind)
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
		out[canon] = v
	}
	return out, nil
}
