package gen

import (
	"context"
	"encoding/json"

	"github.com/jackc/pgx/v5"
)

func connectPG(ctx context.Context, dsn string) (*pgx.Conn, error) { return pgx.Connect(ctx, dsn) }

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
