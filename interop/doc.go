// Package interop holds PulseBus's interoperability tests against other
// implementations of the standards it speaks, kept in a module of their own
// so their dependencies (the CloudEvents Go SDK and its Sarama-based Kafka
// binding) stay out of the product's go.mod.
//
// The CloudEvents conformance suite is in cloudevents_test.go; its doc
// comment lists the cases.
package interop
