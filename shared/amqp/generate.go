package amqp

// spec_gen.go is generated from spec/amqp0-9-1.stripped.extended.xml and
// spec/rabbitmq-additions.xml by internal/gen.
//go:generate go run ./internal/gen
