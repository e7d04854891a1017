package sharing

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/pii"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// The exchange table ends equal to the newest version of every record — in
// PostgreSQL and in MySQL — through redelivery, an older version arriving late and a
// restart, with ID numbers masked, and an unreadable change and a row the database
// refuses in the dead-letter topic.
func TestExchangeTable(t *testing.T) {
	for _, driver := range []string{"postgres", "mysql"} {
		t.Run(driver, func(t *testing.T) {
			var dsn, open string
			switch driver {
			case "postgres":
				p, db := testenv.PostgresDatabase(t)
				dsn, open = p.ConnString(db), "pgx"
			case "mysql":
				m, db := testenv.MariaDBDatabase(t)
				dsn, open = m.RootDSN(db), "mysql"
			}
			k := testenv.Kafka(t, testenv.WithTopics(2, schemas.CanonicalTopic(prefix, "person"), schemas.DLQTopic(prefix, "sink")))
			var msgs []bus.Message
			for i := 0; i < 100; i++ {
				msgs = append(msgs, personMsg(t, fmt.Sprintf("P%03d", i), 1, "一"))
			}
			for i := 0; i < 100; i += 2 {
				msgs = append(msgs, personMsg(t, fmt.Sprintf("P%03d", i), 2, "二"))
			}
			msgs = append(msgs, bus.Message{Topic: schemas.CanonicalTopic(prefix, "person"), Key: []byte("X"), Value: []byte("{not json")})
			// A row the platform's own rule refuses (a CHECK its DBA added to the table):
			// it goes to the dead-letter topic while the rest of its batch is written.
			msgs = append(msgs, personMsg(t, "PBAD", 1, "拒"))
			for i := 0; i < 100; i += 2 {
				msgs = append(msgs, personMsg(t, fmt.Sprintf("P%03d", i), 2, "二"))
			}
			produce(t, k, msgs)
			prot, err := pii.New(pii.Options{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			prod, err := bus.NewProducer(bus.Options{Brokers: k.Brokers()})
			if err != nil {
				t.Fatal(err)
			}
			defer prod.Close()
			newW := func() *ExchangeWorker {
				w, err := NewExchange(ExchangeOptions{Name: "exchange", TopicPrefix: prefix, ClientID: "t", Entities: []string{"person"}, Protect: prot,
					Driver: driver, DSN: dsn, Bus: bus.Options{Brokers: k.Brokers()}, Producer: prod, BatchSize: 30, Registerer: prometheus.NewRegistry()})
				if err != nil {
					t.Fatal(err)
				}
				return w
			}
			db, err := sql.Open(open, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			create := strings.Replace(newW().creates[0], "PRIMARY KEY (entity, record_key))",
				"PRIMARY KEY (entity, record_key), CONSTRAINT platform_rule CHECK (record_key <> 'PBAD'))", 1)
			if _, err := db.Exec(create); err != nil {
				t.Fatal(err)
			}
			state := func() (map[string]string, error) {
				rows, err := db.Query("SELECT record_key, version, data FROM " + ExchangeTable + " WHERE entity = 'person'")
				if err != nil {
					return nil, err
				}
				defer rows.Close()
				out := map[string]string{}
				for rows.Next() {
					var key, data string
					var v int64
					if err := rows.Scan(&key, &v, &data); err != nil {
						return nil, err
					}
					var d map[string]any
					if err := json.Unmarshal([]byte(data), &d); err != nil {
						return nil, err
					}
					out[key] = fmt.Sprintf("%d/%v/%v", v, d["name"], d["id_no"])
				}
				return out, rows.Err()
			}
			waitState := func(what string, ok func(map[string]string) bool) {
				testenv.Eventually(t, 30*time.Second, what, func() (bool, string) {
					s, err := state()
					return err == nil && ok(s), fmt.Sprint(len(s), " rows ", err)
				})
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- newW().Run(ctx) }()
			waitState("every person at its newest version", func(s map[string]string) bool {
				return len(s) == 100 && s["P000"] == "2/二/5134**********0027" && s["P001"] == "1/一/5134**********0027"
			})
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			// Late and repeated changes after a restart: an older version, a repeat.
			produce(t, k, []bus.Message{personMsg(t, "P000", 1, "旧"), personMsg(t, "P002", 2, "二"), personMsg(t, "P100", 1, "新")})
			ctx, cancel = context.WithCancel(context.Background())
			go func() { done <- newW().Run(ctx) }()
			waitState("the new person after the restart", func(s map[string]string) bool { return len(s) == 101 })
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			s, err := state()
			if err != nil {
				t.Fatal(err)
			}
			if s["P000"] != "2/二/5134**********0027" || s["P002"] != "2/二/5134**********0027" {
				t.Errorf("older or repeated changes regressed rows: P000 %s, P002 %s", s["P000"], s["P002"])
			}
			var stored int64
			if err := db.QueryRow("SELECT sum(next_offset) FROM " + ExchangeOffsets).Scan(&stored); err != nil {
				t.Fatal(err)
			}
			if stored != int64(len(msgs))+3 {
				t.Errorf("stored offsets sum to %d, want %d", stored, len(msgs)+3)
			}
			dead := strings.Join(readDLQ(t, k, 2), "\n")
			if !strings.Contains(dead, "malformed payload") || !strings.Contains(dead, "refused by the sharing platform database") {
				t.Errorf("dead letters %q: want the malformed payload and the refused row", dead)
			}
		})
	}
}
