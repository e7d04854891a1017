package bus

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/shouwang/shouwang/schemas"
)

// DeadRecord is the dead-letter record of a consumed message m that stage could not
// process: m's topic, position, key and payload with the reason.
func DeadRecord(stage, reason string, m Message, now time.Time) schemas.DLQRecord {
	return schemas.DLQRecord{Stage: stage, Reason: reason, Source: m.Topic, Position: fmt.Sprintf("%s/%d@%d", m.Topic, m.Partition, m.Offset),
		Key: string(m.Key), Payload: m.Value, Partition: m.Partition, Offset: m.Offset, TsMs: now.UnixMilli()}
}

// DeadLetter is the message for rec on <prefix>.dlq.<stage>. scrub (nil: none) is
// applied to the reason, key and payload first, so that dead letters do not keep ID
// numbers and phones in clear (pii.Protector.ScrubText).
func DeadLetter(prefix string, rec schemas.DLQRecord, scrub func(string) string) Message {
	if scrub != nil {
		rec.Reason, rec.Key, rec.Payload = scrub(rec.Reason), scrub(rec.Key), []byte(scrub(string(rec.Payload)))
	}
	b, err := json.Marshal(rec)
	if err != nil {
		// Strings, bytes and integers only: failing is a programming error.
		panic(fmt.Sprintf("bus: encode dead letter: %v", err))
	}
	return Message{Topic: schemas.DLQTopic(prefix, rec.Stage), Key: []byte(rec.Key), Value: b}
}
