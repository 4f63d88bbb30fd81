module github.com/amqp-go/amqp-go/shared

go 1.26.8
