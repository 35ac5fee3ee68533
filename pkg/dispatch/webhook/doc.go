// Package webhook is a [dispatch.Handler] that delivers each event to an
// HTTP endpoint as a CloudEvent in the HTTP protocol binding's binary mode:
// one POST per event, the payload as the body, the attributes as headers.
//
//	POST /hooks/search HTTP/1.1
//	ce-specversion: 1.0
//	ce-id: 0195f3c2-7a0e-7c4b-9d7e-2b1f0c9a6e11
//	ce-type: lesson.published
//	ce-source: lessons-api
//	ce-time: 2025-03-01T12:00:00.123456Z
//	ce-subject: ...             (when the event has one; so for ce-time, ce-dataschema)
//	ce-<ext>: ...               (one per extension attribute: tenant, traceparent, partitionkey, ...)
//	Content-Type: application/json
//	Idempotency-Key: 0195f3c2-7a0e-7c4b-9d7e-2b1f0c9a6e11
//
// The request carries exactly the attributes of the event, as the producer
// wrote them: the id byte for byte (also in Idempotency-Key), no ce-time
// when the event had none, and the Kafka message key only when the producer
// set the partitionkey extension. Header values are percent-encoded as the
// binding requires (space, '"', '%' and everything outside printable
// ASCII).
//
// # Delivery and errors
//
// Delivery is at least once: after a retry or a consumer crash the endpoint
// can see an event again, with the same ce-id and Idempotency-Key, which it
// should use to drop duplicates.
//
// The handler classifies each failure for the consumer's retry policy:
//
//   - 2xx: delivered.
//   - Network errors, timeouts ([Config.Timeout]), 5xx, 408 and 429:
//     [dispatch.Transient], so the consumer retries with its back-off for
//     the handler's RetryPolicy.RetryFor (10 minutes by default), holding
//     the partition for this handler: a deploy or a short outage of the
//     endpoint delays events, in order, and dead-letters none. A
//     Retry-After header (seconds or an HTTP date, at most
//     [MaxRetryAfter]) is obeyed: the next attempt waits at least that
//     long.
//   - Any other status (other 4xx, and 3xx: redirects are not followed,
//     since a POST may not survive one): [dispatch.Permanent], so the event
//     is dead-lettered at once. The error names the status and
//     quotes the start of the response body.
//
// Errors are [*StatusError] for an HTTP answer; their text shows the URL as
// scheme://host/..., scheme and host only: user info, path, query and
// fragment may all hold credentials (Slack-style webhooks carry their token
// in the path).
package webhook
