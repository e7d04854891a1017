package bus

import (
	"time"

	"github.com/segmentio/kafka-go"
)

// Header is one Kafka record header. Kafka allows repeated keys, so headers are a list.
type Header struct {
	Key   string
	Value []byte
}

// Message is one Kafka record. Topic is required when producing; Partition, Offset and
// Time are filled in on consume (Time may be set on produce; zero means "now").
type Message struct {
	Topic     string
	Key       []byte
	Value     []byte
	Headers   []Header
	Partition int
	Offset    int64
	Time      time.Time
}

// Header returns the value of the first header named key, or "" when there is none.
func (m Message) Header(key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func (m Message) toKafka() kafka.Message {
	km := kafka.Message{Topic: m.Topic, Key: m.Key, Value: m.Value, Time: m.Time}
	if len(m.Headers) > 0 {
		km.Headers = make([]kafka.Header, len(m.Headers))
		for i, h := range m.Headers {
			km.Headers[i] = kafka.Header{Key: h.Key, Value: h.Value}
		}
	}
	return km
}

func fromKafka(km kafka.Message) Message {
	m := Message{
		Topic:     km.Topic,
		Key:       km.Key,
		Value:     km.Value,
		Partition: km.Partition,
		Offset:    km.Offset,
		Time:      km.Time,
	}
	if len(km.Headers) > 0 {
		m.Headers = make([]Header, len(km.Headers))
		for i, h := range km.Headers {
			m.Headers[i] = Header{Key: h.Key, Value: h.Value}
		}
	}
	return m
}

// size is the payload size counted by the byte metrics.
func (m Message) size() int {
	n := len(m.Key) + len(m.Value)
	for _, h := range m.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}
