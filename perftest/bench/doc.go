// Package bench implements perftest, a load generator for AMQP 0.9.1 brokers
// modelled on RabbitMQ's PerfTest (the Java tool): same flag names, same
// topology rules and the same report lines, plus end-to-end checks for lost,
// duplicated and out-of-order messages.
//
// Every message body starts with a 20-byte header (see EncodeHeader): an
// 8-byte per-producer sequence number, a 4-byte producer tag and an 8-byte
// UnixNano send timestamp, all big-endian. Consumers use it to measure
// end-to-end latency and to track sequences per producer and queue.
package bench
