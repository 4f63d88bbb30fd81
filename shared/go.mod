module github.com/amqp-go/amqp-go/shared

go 1.26.8

require (
	go.etcd.io/raft/v3 v3.7.0
	google.golang.org/protobuf v1.36.11
)
