// Package schemas — contracts and their versioning.
//
// # What lives here
//
//   - envelope.go: the change Envelope every topic carries (schema json/envelope.v1.json).
//   - envelope_encode.go, envelope_decode.go: reflection-free JSON encoding and
//     decoding of the envelope that match encoding/json exactly (differential fuzz
//     tests against it); DecodeValue and DecodeObject decode any JSON document the
//     same way (numbers as json.Number), for consumers that read rows and entity
//     documents as maps.
//   - canonical_*.go: the canonical entities (Household, Person, MonitoringEpisode,
//     AssistanceMeasure, DepartmentFact, Warning, QualityIssue, Discrepancy). Each
//     embeds Meta (key, version, source, updated_ms); Entities() enumerates them with
//     their topic and latest schema version.
//   - json/<name>.v<N>.json: one JSON Schema (draft 2020-12 style) per published
//     version, embedded and served by SchemaFile. ValidateDocument checks a document
//     against one; CheckCompatible compares two versions.
//   - testdata/<name>.v<N>.golden.json: one example document per published version.
//
// On a canonical topic the Kafka value is an Envelope whose After is the entity
// document and whose Schema names the entity schema and version; the Kafka key is
// the entity's Key. Consumers drop an event whose Version is not greater than the
// one they stored for that key, which makes replays harmless. Ids of derived
// records come from DeterministicID so that replays do not duplicate them.
//
// Money and other exact quantities are Decimal: decimal text in a JSON string (see
// Decimal for why not float64 or json.Number). Optional yes/no facts are *bool so
// "not recorded" differs from "no"; optional fields are omitted when empty.
//
// # Versioning rules
//
// Readers of one version must read documents of the neighbouring versions: sinks
// replay old events, and consumers outside Shouwang upgrade late. Therefore:
//
//  1. Adding an optional property is free: add the Go field with omitempty, add it to
//     the latest schema file, and show it in the latest golden. Every schema has
//     "additionalProperties": true, so old readers ignore the new property. Adding
//     an enum value or widening a bound is allowed the same way, but check that
//     consumers switching on the value have a default branch.
//  2. Anything else — removing or renaming a property, changing a type or format,
//     making a property required, removing an enum value, tightening a pattern or a
//     bound — is a new version: copy json/<name>.vN.json to vN+1, edit the copy,
//     add testdata/<name>.vN+1.golden.json, bump the version in Entities(), and
//     publish on VersionedTopic(base, N+1) while still producing version N on the
//     old topic until its readers have moved. Never delete or edit an old golden:
//     TestGoldenRoundTrip proves today's types still read it.
//  3. CI enforces this: TestSchemaVersionsCompatible runs CheckCompatible on every
//     vN-1 → vN pair; TestGoTypesMatchLatestSchema fails when a Go struct and its
//     latest schema disagree (field missing, different JSON type, required property
//     missing or omitempty); the golden tests fail when a field is lost or invented
//     on a decode/encode round trip.
//
// The envelope follows the same rules with EnvelopeVersion; its readers accept
// every version up to their own.
package schemas
