package pii

import (
	"context"
	"fmt"
	"log/slog"
)

// NewLogHandler wraps next so that no log record reaches it with a full ID number,
// certificate number or mobile number: the message and every attribute go through
// MaskText. String values are masked in place; numbers (a 15-digit ID number may be
// an integer), errors, Stringers and other values are masked in their printed form
// and become strings only when something was masked. Groups are masked recursively.
// It is a safety net for messages that quote input (errors of parsers, database
// errors echoing a row); code should still log masked values on purpose.
func NewLogHandler(next slog.Handler) slog.Handler { return logHandler{next} }

type logHandler struct{ next slog.Handler }

func (h logHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h logHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, MaskText(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(maskAttr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	masked := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		masked[i] = maskAttr(a)
	}
	return logHandler{h.next.WithAttrs(masked)}
}

func (h logHandler) WithGroup(name string) slog.Handler { return logHandler{h.next.WithGroup(name)} }

func maskAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, MaskText(v.String()))
	case slog.KindGroup:
		g := v.Group()
		masked := make([]any, len(g))
		for i, e := range g {
			masked[i] = maskAttr(e)
		}
		return slog.Group(a.Key, masked...)
	case slog.KindInt64, slog.KindUint64, slog.KindFloat64:
		if s := v.String(); MaskText(s) != s {
			return slog.String(a.Key, MaskText(s))
		}
	case slog.KindAny:
		var s string
		switch x := v.Any().(type) {
		case error:
			s = x.Error()
		case fmt.Stringer:
			s = x.String()
		default:
			s = fmt.Sprintf("%+v", x)
		}
		if m := MaskText(s); m != s {
			return slog.String(a.Key, m)
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
