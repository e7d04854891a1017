package pii

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestLogHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(NewLogHandler(slog.NewJSONHandler(&buf, nil))).With("person", idB)
	log.Info("row 7: id "+idA+" is a duplicate",
		"phone", phone,
		"id15", 510104900101123,
		"err", fmt.Errorf("insert: duplicate key (id_no)=(%s)", idC),
		"row", map[string]string{"id_no": idA},
		slog.Group("g", "cert", idA+"41", "n", 3),
		"count", 42,
	)
	out := buf.String()
	if id := validIDIn(out); id != "" || strings.Contains(out, phone) || strings.Contains(out, idA15) {
		t.Fatalf("log leaks: %s", out)
	}
	for _, want := range []string{
		`"msg":"row 7: id 5101**********1230 is a duplicate"`,
		`"person":"5107**********104X"`,
		`"phone":"138****8000"`,
		`"id15":"5101*******1123"`,
		`"err":"insert: duplicate key (id_no)=(4403**********1001)"`,
		`"row":"map[id_no:5101**********1230]"`,
		`"g":{"cert":"5101************3041","n":3}`,
		`"count":42`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s in %s", want, out)
		}
	}
	buf.Reset()
	log.WithGroup("x").Info("plain", "err", errors.New("no pii"))
	if !strings.Contains(buf.String(), `"x":{"err":"no pii"}`) {
		t.Errorf("unmasked values must stay as they are: %s", buf.String())
	}
}
