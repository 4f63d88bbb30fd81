package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestGeneratedFileUpToDate regenerates spec_gen.go in memory and compares it
// with the checked-in file, so editing the XML or the generator without
// running go generate fails the tests.
func TestGeneratedFileUpToDate(t *testing.T) {
	const (
		specPath = "spec/amqp0-9-1.stripped.extended.xml"
		addPath  = "spec/rabbitmq-additions.xml"
	)
	root := filepath.Join("..", "..")
	base, err := load(filepath.Join(root, specPath))
	if err != nil {
		t.Fatal(err)
	}
	add, err := load(filepath.Join(root, addPath))
	if err != nil {
		t.Fatal(err)
	}
	merge(base, add)
	got, err := generate(base, []string{specPath, addPath})
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(root, "spec_gen.go"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("spec_gen.go is stale: run go generate in shared/amqp")
	}
}

func TestCamel(t *testing.T) {
	for in, want := range map[string]string{
		"reserved-1": "Reserved1", "routing-key": "RoutingKey", "class-id": "ClassID",
		"no-ack": "NoAck", "update-secret-ok": "UpdateSecretOk", "heartbeat": "Heartbeat",
		"frame-min-size": "FrameMinSize", "id": "ID",
	} {
		if got := camel(in); got != want {
			t.Errorf("camel(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMergeAddsRabbitMQMethods(t *testing.T) {
	base, err := load("../../spec/amqp0-9-1.stripped.extended.xml")
	if err != nil {
		t.Fatal(err)
	}
	add, err := load("../../spec/rabbitmq-additions.xml")
	if err != nil {
		t.Fatal(err)
	}
	merge(base, add)
	merge(base, add) // idempotent
	methods, err := resolve(base)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, m := range methods {
		count[m.goName]++
	}
	for _, name := range []string{"ConnectionBlocked", "ConnectionUnblocked", "ConnectionUpdateSecret", "ConnectionUpdateSecretOk", "BasicPublish"} {
		if count[name] != 1 {
			t.Errorf("%s defined %d times", name, count[name])
		}
	}
	consts := 0
	for _, c := range base.Constants {
		if c.Name == "no-route" {
			consts++
		}
	}
	if consts != 1 {
		t.Errorf("no-route defined %d times", consts)
	}
}
