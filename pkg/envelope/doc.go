// Package envelope defines the PulseBus event envelope and its mapping to
// Kafka messages. It does no I/O.
//
// An [Envelope] carries one domain event: a time-ordered id (UUIDv7), a
// type such as "lesson.published", the producing source, an optional
// subject, a partition key, a time, extension attributes (Meta) and the
// payload bytes. On Kafka it travels in the CloudEvents Kafka protocol
// binding, binary mode: the key is the partition key, the value is the
// payload, and every attribute is a header (ce_specversion, ce_id, ce_type,
// ce_source, ce_time, ce_subject, content-type, and ce_<name> for each Meta
// entry). Any CloudEvents consumer can read PulseBus topics, and PulseBus
// can read topics written by any CloudEvents binary-mode producer.
//
// Typed events implement [Event]; [New] builds an envelope from one and
// [Decode] gets it back, refusing an envelope of another type.
//
// Validation and decoding never panic. They return a [*FieldError] naming
// the bad attribute, a [*LimitError] for a field over its [Limits], or a
// [*TypeMismatchError]; all of them match [ErrInvalid] with errors.Is, which
// is how consumers tell a malformed message (park it, do not retry) from a
// transient failure.
package envelope
