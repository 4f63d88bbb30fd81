module github.com/amqp-go/amqp-go/perftest

go 1.26.8

require (
	github.com/HdrHistogram/hdrhistogram-go v1.4.0
	github.com/rabbitmq/amqp091-go v1.10.0
	github.com/urfave/cli/v2 v2.27.7
)

require (
	github.com/amqp-go/amqp-go/server v0.0.0
	github.com/amqp-go/amqp-go/shared v0.0.0
	github.com/cpuguy83/go-md2man/v2 v2.0.7 // indirect
	github.com/russross/blackfriday/v2 v2.1.0 // indirect
	github.com/xrash/smetrics v0.0.0-20240521201337-686a1a2994c1 // indirect
)

replace github.com/amqp-go/amqp-go/server => ../server

replace github.com/amqp-go/amqp-go/shared => ../shared
