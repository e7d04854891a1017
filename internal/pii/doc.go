// Package pii protects the personal identifiers that flow through Shouwang — resident
// ID numbers, disability certificate numbers and mobile phone numbers — in target
// topics (per topic and kind of field), in dead-letter records and reports (free text
// and rows), and in logs. It is a domain primitive shared by capture, transforms and
// sinks; identifiers are parsed and normalised by internal/ident, which this package
// builds on.
//
// # Methods
//
//   - mask: hide the middle, keeping what ident.MaskID and ident.MaskPhone keep (first
//     4 and last 4 characters of an ID or certificate number, 5101**********123X; first
//     3 and last 4 digits of a phone, 138****5678). Irreversible. The default for
//     dead-letter records and reports.
//   - sm4: SM4-GCM encryption (GB/T 32907, gmsm) with a random 96-bit nonce under the
//     active sm4 key. Reversible with the key, not joinable (equal values give
//     different tokens). Encrypts the value exactly as given, so Reveal restores the
//     original spelling byte for byte.
//   - sm3: an HMAC-SM3 pseudonym (GB/T 32905, GM/T 0042) under the active sm3 key.
//     Irreversible and deterministic: equal ID numbers get equal pseudonyms, whatever
//     their spelling, so pseudonymised data stays joinable across departments.
//   - raw: no change; an explicit opt-in.
//
// # Tokens
//
// Protected values are printable and say how they were made:
//
//	sm4:<key id>:<base64url>   base64url (RFC 4648 §5, no padding) of
//	                           length(3 bytes, big-endian) || nonce(12) || ciphertext || tag(16);
//	                           additional data "sm4:<key id>:" || length
//	sm3:<key id>:<64 hex>      lower-case hex of HMAC-SM3(key, "<kind>:<canonical value>")
//
// The key id lets Reveal pick the right key after a rotation. The length prefix makes
// an sm4 token self-delimiting inside free text (a letter or digit may follow it
// directly) and is authenticated together with the key id. Kinds are id_number, phone
// and disability_cert (domain separation between kinds); the canonical values are
// documented on Canonical: the 18-character form of a valid ID number (a 15-digit
// number upgraded, full-width digits, spaces and a lower-case x normalised), a phone
// without +86 and hyphens. A system outside Shouwang holding the HMAC key can compute
// the same pseudonyms from this description.
//
// Protecting a value that already is a token returns it unchanged, and the empty string
// stays empty, so a replayed record is not protected twice.
//
// # Configuration
//
// Options is the pii section of the configuration file:
//
//	pii:
//	  keys:
//	    - id: k2026a                 # [A-Za-z0-9_-]{1,32}, written into tokens
//	      purpose: sm4               # sm4: 16-byte SM4 key; sm3: HMAC key of >= 16 bytes
//	      file: keys/k2026a.sm4      # raw bytes, hex or base64 (encoding: auto|raw|hex|base64)
//	      active: true               # the key new values use (one per purpose)
//	    - id: k2025b                 # retired: kept so that old tokens still decrypt
//	      purpose: sm4
//	      env: SHOUWANG_PII_K2025B   # hex or base64 text in an environment variable
//	    - id: p1
//	      purpose: sm3               # a single key of its purpose is active without a mark
//	      file: keys/p1.hmac
//	  dlq: mask                      # dead-letter records and reports: mask (default) | sm4 | raw
//	  default:                       # topics not listed below, kind by kind
//	    id_number: mask
//	    phone: mask
//	  topics:                        # a topic, or an entity standing for <prefix>.canonical.<entity>
//	    person:
//	      id_number: sm3             # mask | sm4 | sm3 | raw
//	      phone: sm4
//	      disability_cert: sm3       # unset: follows id_number (a certificate contains the ID)
//	    sc.canonical.household:
//	      id_number: raw
//	      phone: raw
//
// Protector.Methods resolves a topic: its own entry, else its entity's entry for
// <prefix>.canonical.<entity>, then default, kind by kind; an unset disability_cert
// takes the id_number method; anything still unset is raw, because the provincial
// database needs the real ID number as its join key unless the configuration says
// otherwise. dlq cannot be sm3: a pseudonymised record could never be redriven.
//
// Options.Validate checks the section without I/O and reports every problem with its
// dotted key path (pii.keys[1].file, pii.topics.person.phone) through errors.Join of
// *Problem. LoadKeys reads the keys (relative file names against the configuration's
// directory) and reports missing files, unset variables and wrong lengths with the
// command that makes a valid key, e.g. "pii.keys[0].file: /etc/shouwang/k1: no such
// file; create a key with: (umask 077 && head -c16 /dev/urandom > /etc/shouwang/k1)".
// In auto encoding a 16-byte sm4 file is raw bytes; otherwise hex, then base64
// (standard or URL alphabet, padding optional), then (files only) raw bytes.
// Open does both and builds the Protector; New builds one from a KeySet made in code.
//
// # Key rotation
//
// Add a new key, mark it active and keep the old one (without active): new values use
// the new key, Reveal still decrypts the old tokens by the id they name, and a token
// whose key was removed fails with ErrUnknownKey naming the id. A random 96-bit nonce
// keeps SM4-GCM safe for about 2^32 encryptions per key: rotate sm4 keys well before
// (and at least yearly). Rotating the sm3 key changes every pseudonym and so breaks
// joins with data pseudonymised before; do it only with a plan to re-pseudonymise.
//
// # Free text: ScrubText, ScrubMap, MaskText
//
// Dead-letter records keep the raw row for redrive, and error messages quote input, so
// identifiers are searched for in text and protected with the dlq method (ScrubText,
// ScrubMap for decoded JSON rows) or always masked (MaskText, NewLogHandler for logs).
// The search sees text the way ident.Normalize does: full-width digits are digits, x,
// ｘ, Ｘ and × are X, and white space, control and invisible characters inside a number
// do not split it (510104 19900101 123X is found). A single hyphen joins digit groups
// too (138-0013-8000). It finds:
//
//   - ID numbers: 17 digits and a digit or X (also with a wrong check digit: a mistyped
//     ID number is still personal data), and 15-digit numbers (old ID numbers);
//   - disability certificates: an ID number and 2 more digits (20), masked as one
//     number; a 2-letter suffix stays beside it;
//   - mobile numbers: 1[3-9] and 9 digits, alone or written 3-4-4 or 3-8, optionally
//     after 86;
//   - any longer digit run that embeds a valid ID number (checksum and birth date
//     right), protected as a whole, so that an ID glued to other digits does not leak.
//
// Within a run of digit groups separated by spaces, groups that validate are preferred
// to groups that only have the shape (in "第45 510104199001011230" only the ID number
// is masked). Everything else is left alone: dates (2024-01-02, 20240102), amounts,
// 12-digit region codes, a 19-digit bank card number or a card written in groups of
// four (unless it embeds a valid ID number, which about 1 in 11 000 random 19-digit
// numbers does), landlines, and existing sm3/sm4 tokens. The price of masking mistyped IDs is that any other 15- or
// 18-digit number (a long serial number) is masked too.
//
// With mask, no valid 18-character ID number survives in the output (a fuzz test
// checks every substring); with sm4, Reveal(ScrubText(s)) == s for text without
// pre-existing tokens. ScrubMap masks strings and also numbers whose digits hold an
// identifier (they become strings); map keys are column names and stay.
//
// Reveal and RevealMap decrypt every sm4 token for a redrive and fail, without
// quoting content, when a key is missing (ErrUnknownKey), a token was altered
// (ErrTampered) or cut (ErrMalformed). sm3 tokens and masks stay as they are.
package pii
